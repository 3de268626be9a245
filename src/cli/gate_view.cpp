#include "cli/gate_view.hpp"

#include <fmt/format.h>

#include <cstdio>

#include "cli/cluster_config.hpp"
#include "hyperscale/host/address.hpp"

namespace hs::cli {

namespace {
std::string addr(cluster::NodeId n) { return n ? host::node_addr_string(n) : std::string("none"); }
std::string addr_json(cluster::NodeId n) { return n ? json_str(host::node_addr_string(n)) : std::string("null"); }
}  // namespace

std::string datacenters_json(const cluster::JobView& v) {
  std::string out;
  for (const auto& d : v.datacenters) {
    std::string tried;
    for (const auto& t : d.tried) {
      if (!tried.empty()) tried += ",";
      tried += json_str(t);
    }
    std::string wfs;
    for (const auto& w : d.workflows) {
      if (!wfs.empty()) wfs += ',';
      wfs += fmt::format("{{\"name\":{},\"state\":\"{}\",\"completed\":{},\"failed\":{},\"lost\":{}}}",
                         json_str(w.name), cluster::name(w.state), w.completed, w.failed, w.lost);
    }
    if (!out.empty()) out += ',';
    out += fmt::format(
        "{{\"name\":{},\"state\":\"{}\",\"accepted\":{},\"completed\":{},\"failed\":{},\"leader\":{},\"error\":{},"
        "\"late\":{},\"tried\":[{}],\"workflows\":[{}]}}",
        json_str(d.name), cluster::name(d.state), d.accepted, d.completed, d.failed, addr_json(d.leader),
        json_str(d.error), d.late, tried, wfs);
  }
  return "[" + out + "]";
}

void print_datacenters(const cluster::JobView& v) {
  if (!v.datacenters.empty())
    std::printf("  owner gate %s (fence %llu)\n", addr(v.owner).c_str(), static_cast<unsigned long long>(v.fence));
  for (const auto& d : v.datacenters) {
    std::printf("  datacenter %s: %s completed=%llu failed=%llu leader=%s%s\n", d.name.c_str(), cluster::name(d.state),
                static_cast<unsigned long long>(d.completed), static_cast<unsigned long long>(d.failed),
                addr(d.leader).c_str(), d.accepted ? "" : " (not accepted yet)");
    if (!d.error.empty()) std::printf("    error: %s\n", d.error.c_str());
    if (!d.tried.empty())
      std::printf("    refused first by: %s\n", fmt::format("{}", fmt::join(d.tried, ", ")).c_str());
    if (d.late) std::printf("    a late result arrived after the share was decided (recorded, not counted)\n");
  }
  if (!v.datacenters.empty() && !v.cancel_errors.empty())
    for (const auto& e : v.cancel_errors) std::printf("  cancel: %s\n", e.c_str());
}

void print_gate_status(const cluster::NodeStatus& r, bool json) {
  if (json) {
    std::string dcs, jobs;
    for (const auto& j : r.active_job_ids) {
      if (!jobs.empty()) jobs += ",";
      jobs += json_str(j);
    }
    for (const auto& d : r.datacenters) {
      if (!dcs.empty()) dcs += ',';
      dcs += fmt::format(
          "{{\"name\":{},\"state\":\"{}\",\"health\":\"{}\",\"leader\":{},\"term\":{},\"managers\":{},"
          "\"managers_heard\":{},\"worker_count\":{},\"healthy_worker_count\":{},\"total_cores\":{},"
          "\"available_cores\":{},\"active_jobs\":{}}}",
          json_str(d.name), cluster::name(d.state), cluster::name(d.health), addr_json(d.leader), d.term, d.managers,
          d.managers_heard, d.worker_count, d.healthy_worker_count, d.total_cores, d.available_cores, d.active_jobs);
    }
    std::printf(
        "{\"node\":%s,\"role\":\"gate\",\"is_leader\":%s,\"term\":%llu,\"leader\":%s,\"active_job_ids\":[%s],"
        "\"datacenters\":[%s]}\n",
        json_str(host::node_addr_string(r.node)).c_str(), r.is_leader ? "true" : "false",
        static_cast<unsigned long long>(r.term), addr_json(r.leader).c_str(), jobs.c_str(), dcs.c_str());
    return;
  }
  std::printf("gate %s: leader=%s term=%llu (this gate leads: %s) active jobs=%zu\n",
              host::node_addr_string(r.node).c_str(), addr(r.leader).c_str(), static_cast<unsigned long long>(r.term),
              r.is_leader ? "yes" : "no", r.active_job_ids.size());
  for (const auto& d : r.datacenters)
    std::printf("  datacenter %s: %s %s leader=%s managers=%u/%u workers=%u/%u healthy cores=%u/%u free jobs=%u\n",
                d.name.c_str(), cluster::name(d.state), cluster::name(d.health), addr(d.leader).c_str(),
                d.managers_heard, d.managers, d.healthy_worker_count, d.worker_count, d.available_cores, d.total_cores,
                d.active_jobs);
}

}  // namespace hs::cli
