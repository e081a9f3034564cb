// A free block is nothing but a pointer to the next free block of its page.
#pragma once

namespace shardalloc::core {

struct Block {
  Block* next;
};

}  // namespace shardalloc::core
