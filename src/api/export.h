// SHARD_EXPORT: a function of the public C API (include/shardalloc/), visible
// outside the library (everything else is built -fvisibility=hidden).
// SHARD_EXPORT_CXX: the same for C++ symbols (operator new / delete,
// src/override/new_delete.cpp).
// The bare platform's two exports (shard_set_cpu_hook, shard_set_fatal_hook)
// spell the attribute out: src/platform/bare may include only the core
// (docs/LAYERS.md).
#pragma once

#define SHARD_EXPORT_CXX __attribute__((visibility("default")))
#define SHARD_EXPORT extern "C" SHARD_EXPORT_CXX
