// A kernel that keeps a stream busy for a while, so tests can catch work queued behind it.
#pragma once

namespace zkynet_test {

// Queues one thread spinning for `microseconds` on `stream` (a cudaStream_t).
void spin(void* stream, long long microseconds);

}  // namespace zkynet_test
