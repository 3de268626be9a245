// Every role message type in use and the struct it carries (include/hyperscale/cluster/messages.hpp),
// for the codec test (test_codec.cpp) and the fuzz target (tests/fuzz/cluster). A type added to
// MsgType must be added here or to retired() below: the test "every message type is listed" fails
// otherwise.
#pragma once

#include "hyperscale/cluster/messages.hpp"

// clang-format off
#define HS_ROLE_MESSAGES(X) \
  X(submit, Submit) \
  X(submit_ack, SubmitAck) \
  X(status_query, StatusQuery) \
  X(status_reply, StatusReply) \
  X(cancel_job, CancelJob) \
  X(cancel_reply, CancelReply) \
  X(cancel_workflow, CancelWorkflow) \
  X(node_query, NodeQuery) \
  X(node_status, NodeStatus) \
  X(heartbeat, Heartbeat) \
  X(heartbeat_ack, HeartbeatAck) \
  X(dispatch, Dispatch) \
  X(dispatch_ack, DispatchAck) \
  X(progress, Progress) \
  X(result, ResultMsg) \
  X(result_ack, ResultAck) \
  X(stop_exec, StopExec) \
  X(stop_ack, StopAck) \
  X(window_batch, WindowBatch) \
  X(window_ack, WindowAck) \
  X(watch_query, WatchQuery) \
  X(watch_reply, WatchReply) \
  X(dc_heartbeat, DcHeartbeat) \
  X(dc_heartbeat_ack, DcHeartbeatAck) \
  X(job_fence, JobFence) \
  X(job_fence_ack, JobFenceAck) \
  X(gate_proposal, GateProposal) \
  X(gate_proposal_ack, GateProposalAck)
// clang-format on

namespace hs::cluster::testing {

// Numbers kept so they are never reused, but never sent: no struct, no test.
inline bool retired(MsgType t) {
  switch (t) {
    case MsgType::retired_replicate:
    case MsgType::retired_replicate_ack:
    case MsgType::retired_transfer:
    case MsgType::retired_transfer_ack:
    case MsgType::retired_pull:
    case MsgType::retired_pull_reply:
      return true;
    default:
      return false;
  }
}

// Calls fn.template operator()<Struct>(type) for every type in use.
template <class Fn>
void for_each_message(Fn&& fn) {
#define HS_ROLE_MESSAGE_CALL(T, S) fn.template operator()<S>(MsgType::T);
  HS_ROLE_MESSAGES(HS_ROLE_MESSAGE_CALL)
#undef HS_ROLE_MESSAGE_CALL
}

// True when `t` is listed in HS_ROLE_MESSAGES.
inline bool listed(MsgType t) {
  bool found = false;
  for_each_message([&]<class S>(MsgType m) { found = found || m == t; });
  return found;
}

}  // namespace hs::cluster::testing
