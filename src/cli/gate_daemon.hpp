// The gate's share of the daemons (src/cli/daemons.cpp): its config keys, the datacenter list it
// parses, and its /status JSON and /metrics text (docs/gates.md).
#pragma once

#include <string>
#include <vector>

#include "hyperscale/gate/gate.hpp"
#include "hyperscale/host/config.hpp"

namespace hs::cli {

// cluster.gates, cluster.datacenter, gate.*, manager.gate_heartbeat: appended to cluster_schema().
void add_gate_keys(host::ConfigSchema& s);
// Relations between those keys (appended to cluster_relations()).
void add_gate_relations(std::vector<host::ConfigRelation>& r);

// gate.datacenters: each entry "NAME=HOST:PORT HOST:PORT ..." (the datacenter's managers, space
// separated). Errors name the entry.
Result<std::vector<gate::DatacenterConfig>> parse_datacenters(const std::vector<std::string>& list);

// The gate's GateConfig from the config (gates and datacenters already parsed).
gate::GateConfig gate_config(const host::Config& c, std::vector<node::NodeId> gates,
                             std::vector<gate::DatacenterConfig> dcs);

// /status fields of a gate (after "node", "role" and "running"; starts with a comma).
std::string gate_status_json(const gate::Gate& g);
// /metrics text of a gate's role (hs_gate_*).
std::string gate_metrics_text(const gate::Gate& g);

}  // namespace hs::cli
