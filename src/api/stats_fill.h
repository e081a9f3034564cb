// The statistics struct of include/shardalloc/stats.h from the core's
// (core/stats.h): shared by the freestanding entry points (stats_api.cpp) and
// the process heap's (process_stats_api.cpp).
#pragma once
#include "core/domain.h"
#include "shardalloc/stats.h"

namespace shardalloc::api {

void fill_stats(const core::Domain& d, shard_stats* out);

}  // namespace shardalloc::api
