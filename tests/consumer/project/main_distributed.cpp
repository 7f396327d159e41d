// Linked with zkynet::zkynet only: distributed/ comes with it. Without arguments it does not start
// MPI and prints "linked"; with one it prints the number of ranks.
#include <zkynet/distributed.h>

#include <iostream>

int main(int argc, char**) {
  if (argc > 1) {
    std::cout << zkynet::dist::world().size() << "\n";
  } else {
    std::cout << "linked\n";
  }
  return 0;
}
