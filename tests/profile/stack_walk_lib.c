// A frame of a library that profile.StackWalk.* loads and unloads: built
// twice from this file, with and without unwind tables (the same code at
// the same offsets; CMakeLists.txt).
void stack_walk_lib_call(void (*fn)(void*), void* arg) {
  fn(arg);
  __asm__ volatile("" ::: "memory");  // keep this frame (no tail call)
}
