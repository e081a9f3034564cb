// What a shard_region handle points to (region_api.cpp makes it inside the
// region's memory). Freestanding.
#pragma once
#include "core/domain.h"
#include "core/range_claims.h"
#include "shardalloc/region.h"

struct shard_region {
  shardalloc::core::Domain domain;       // first member: tests read a region as its domain
  shardalloc::core::RangeClaims adding;  // ranges add_memory calls are adding (protocol 11)
};
