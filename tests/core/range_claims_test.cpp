// RangeClaims (core/range_claims.h, protocol 11): what a call sees of the
// other calls' ranges, and what a fork child sees of its parent's.
#include "core/range_claims.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

using shardalloc::core::RangeClaims;

TEST(RangeClaims, AnotherCallsPublishedRangeOverlapsUntilGivenBack) {
  RangeClaims claims;
  const RangeClaims::Claim a = claims.publish(100, 200);
  const RangeClaims::Claim b = claims.publish(150, 250);
  const RangeClaims::Claim c = claims.publish(250, 300);  // adjacent to b: ends are exclusive
  EXPECT_TRUE(claims.overlaps_another(a, 100, 200));
  EXPECT_TRUE(claims.overlaps_another(b, 150, 250));
  EXPECT_FALSE(claims.overlaps_another(c, 250, 300));
  claims.give_back(a);
  EXPECT_FALSE(claims.overlaps_another(b, 150, 250));
  EXPECT_FALSE(claims.overlaps_another(c, 250, 300));
  claims.give_back(b);
  claims.give_back(c);
  // Every record is free again: kRecords calls at once take them all.
  RangeClaims::Claim taken[RangeClaims::kRecords];
  for (unsigned i = 0; i < RangeClaims::kRecords; ++i)
    taken[i] = claims.publish(1000 * i, 1000 * i + 1);
  for (unsigned i = 0; i < RangeClaims::kRecords; ++i) {
    EXPECT_FALSE(claims.overlaps_another(taken[i], 1000 * i, 1000 * i + 1));
    claims.give_back(taken[i]);
  }
}

// Calls of the parent's threads hold records the child's threads will
// never give back: in the child they read as free and unpublished (before,
// a fork review left the child refusing their ranges, and with all records
// held, every add_memory of the child spun for ever).
namespace {

// In a child made by make_child (fork, or _Fork, which runs no atfork
// handlers), with every record taken by the parent: the child takes records
// at once and sees none of the parent's ranges, only its own calls'.
template <class MakeChild>
void child_sees_no_record_of_its_parent(MakeChild make_child) {
  RangeClaims claims;
  for (unsigned i = 0; i < RangeClaims::kRecords; ++i) claims.publish(100, 200);
  const pid_t child = make_child();
  ASSERT_GE(child, 0);
  if (child == 0) {
    alarm(10);  // a child that spins for a record dies of SIGALRM
    const RangeClaims::Claim mine = claims.publish(150, 250);
    if (claims.overlaps_another(mine, 150, 250)) std::_Exit(1);
    const RangeClaims::Claim other = claims.publish(200, 300);
    if (!claims.overlaps_another(other, 200, 300)) std::_Exit(2);  // the child's own calls count
    claims.give_back(mine);
    claims.give_back(other);
    std::_Exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace

TEST(RangeClaims, AForkChildSeesNoRecordOfItsParentsCalls) {
  child_sees_no_record_of_its_parent([] { return fork(); });
}

// _Fork runs no atfork handler: the child is told by its pid (a review: it
// kept the parent's records, as a fork child did before).
TEST(RangeClaims, AForkChildWithoutHandlersSeesNoRecordOfItsParentsCalls) {
  child_sees_no_record_of_its_parent([] { return _Fork(); });
}
