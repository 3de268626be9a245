// How the client commands show a gate tier's answers (docs/gates.md): a job's datacenter shares and
// a gate's node status with its datacenter registry, as text and JSON.
#pragma once

#include <string>

#include "hyperscale/cluster/messages.hpp"

namespace hs::cli {

// JSON array of the job's datacenter shares.
std::string datacenters_json(const cluster::JobView& v);
// One line per datacenter share (nothing for a job of one datacenter's managers).
void print_datacenters(const cluster::JobView& v);
// A gate's node status (`hyperscale status --gate HOST:PORT`).
void print_gate_status(const cluster::NodeStatus& r, bool json);

}  // namespace hs::cli
