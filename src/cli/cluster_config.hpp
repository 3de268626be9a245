// Shared by `hyperscale manager|worker` (src/cli/daemons.cpp) and the client commands
// (src/cli/client.cpp): one config schema for every cluster process (docs/daemons.md).
#pragma once

#include <string>
#include <vector>

#include "hyperscale/host/config.hpp"
#include "hyperscale/node/node.hpp"

namespace hs::cli {

// A schema entry; a duration is bounded to 1 ms .. 1 day.
host::ConfigEntry config_key(std::string key, host::ValueType t, std::string def, std::string doc);

// host::common_schema() + cluster.*, swim.*, election.*, manager.*, worker.* keys. A key of another
// role is accepted and ignored (one file can describe a whole test cluster).
host::ConfigSchema cluster_schema();

// The relations between those keys the protocols rely on (checked with Config::check at load).
std::vector<host::ConfigRelation> cluster_relations();

// Parses cluster.managers ("ip:port" each) into node ids; errors name the entry.
Result<std::vector<node::NodeId>> parse_managers(const std::vector<std::string>& list);

// JSON string literal (quotes included) of `s`.
std::string json_str(const std::string& s);

}  // namespace hs::cli
