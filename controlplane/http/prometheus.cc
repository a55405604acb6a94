#include "controlplane/http/prometheus.h"

#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace herd::controlplane {
namespace {

// Samples of one metric family, written together under one HELP/TYPE header.
class Families {
 public:
  void Add(const std::string& name, const char* type, const std::string& help,
           const std::string& labels, double value) {
    auto& f = families_[name];
    if (f.type.empty()) {
      f.type = type;
      f.help = help;
    }
    absl::StrAppend(&f.samples, name, labels.empty() ? "" : absl::StrCat("{", labels, "}"), " ",
                    Number(value), "\n");
  }
  std::string Render() const {
    std::string out;
    for (const auto& [name, f] : families_) {
      absl::StrAppend(&out, "# HELP ", name, " ", f.help, "\n# TYPE ", name, " ", f.type, "\n",
                      f.samples);
    }
    return out;
  }

 private:
  static std::string Number(double v) {
    if (v == static_cast<double>(static_cast<int64_t>(v)) && v < 1e15 && v > -1e15) {
      return absl::StrCat(static_cast<int64_t>(v));
    }
    return absl::StrFormat("%.17g", v);
  }
  struct Family {
    std::string type, help, samples;
  };
  std::map<std::string, Family> families_;
};

std::string Labels(std::initializer_list<std::pair<const char*, std::string>> kv) {
  std::string out;
  for (const auto& [k, v] : kv) {
    absl::StrAppend(&out, out.empty() ? "" : ",", k, "=\"", EscapeLabelValue(v), "\"");
  }
  return out;
}

}  // namespace

std::string SanitizeMetricName(const std::string& name) {
  std::string out;
  for (char c : name) {
    out.push_back(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' ? c : '_');
  }
  if (out.empty() || absl::ascii_isdigit(static_cast<unsigned char>(out[0]))) out.insert(0, "_");
  return out;
}

std::string EscapeLabelValue(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string RenderPrometheus(const std::vector<herd::v1::HostDetail>& hosts,
                             const Hub::Stats& stats, absl::Time now) {
  Families f;
  const int64_t now_ms = absl::ToUnixMillis(now);
  for (const auto& d : hosts) {
    const auto& h = d.host();
    const std::string host = Labels({{"host", h.host_id()}});
    f.Add("herd_host_info", "gauge", "Host identity (always 1).",
          Labels({{"host", h.host_id()}, {"hostname", h.hostname()},
                  {"agent_version", h.agent_version()}}),
          1);
    f.Add("herd_host_up", "gauge", "1 while the host's stream is up or within its lease.", host,
          h.online() ? 1 : 0);
    f.Add("herd_host_cpu_usage_ratio", "gauge", "Share of all the host's cores in use (0-1).",
          host, h.usage().cpu_percent() / 100.0);
    f.Add("herd_host_memory_total_bytes", "gauge", "Host memory.", host,
          static_cast<double>(h.usage().memory_total_bytes()));
    f.Add("herd_host_memory_available_bytes", "gauge", "Host memory available.", host,
          static_cast<double>(h.usage().memory_available_bytes()));
    f.Add("herd_host_load1", "gauge", "Host load average over 1 minute.", host, h.usage().load1());
    f.Add("herd_host_config_acked_version", "gauge", "Config version the host applied.", host,
          static_cast<double>(h.acked_config_version()));
    f.Add("herd_host_dropped_batches_total", "counter",
          "Metric batches the host dropped while it could not send.", host,
          static_cast<double>(h.dropped_batches()));
    for (const auto& u : d.units()) {
      const std::string lu = Labels({{"host", h.host_id()}, {"module", u.name()}});
      const bool online = u.state() == herd::v1::UNIT_STATE_ONLINE;
      f.Add("herd_module_up", "gauge", "1 when the module (or unit) is online.", lu,
            online ? 1 : 0);
      f.Add("herd_module_cpu_usage_ratio", "gauge",
            "CPU of the module's processes, in cores (1 = one core busy).", lu,
            u.usage().cpu_percent() / 100.0);
      f.Add("herd_module_memory_rss_bytes", "gauge", "Resident memory of the module's processes.",
            lu, static_cast<double>(u.usage().rss_bytes()));
      f.Add("herd_module_restarts_total", "counter", "Restarts of the module.", lu, u.restarts());
      f.Add("herd_module_uptime_seconds", "gauge", "Time since the module's process started.", lu,
            online && u.started_at_unix_ms() > 0
                ? static_cast<double>(now_ms - u.started_at_unix_ms()) / 1000.0
                : 0);
      if (u.is_module()) {
        f.Add("herd_module_issues_total", "counter", "Issues the module reported.", lu,
              static_cast<double>(u.issues_count()));
      }
      for (const auto& p : u.probes()) {
        if (!p.numeric()) continue;
        f.Add(absl::StrCat("herd_probe_", SanitizeMetricName(p.name())), "gauge",
              absl::StrCat("Module probe \"", p.name(), "\"",
                           p.unit().empty() ? "" : absl::StrCat(" (", p.unit(), ")"), "."),
              lu, p.number());
      }
    }
  }
  f.Add("herd_controlplane_hosts", "gauge", "Hosts known to the control plane.", "",
        static_cast<double>(stats.hosts));
  f.Add("herd_controlplane_hosts_online", "gauge", "Hosts online (stream up or within lease).",
        "", static_cast<double>(stats.online));
  f.Add("herd_controlplane_connected_agents", "gauge", "Agent streams connected now.", "",
        static_cast<double>(stats.connected));
  f.Add("herd_controlplane_metric_batches_total", "counter", "Metric batches received.", "",
        static_cast<double>(stats.batches_received));
  f.Add("herd_controlplane_agent_dropped_batches_total", "counter",
        "Metric batches agents reported dropping while disconnected.", "",
        static_cast<double>(stats.batches_dropped_by_agents));
  f.Add("herd_controlplane_config_pushes_total", "counter", "Config snapshots sent to hosts.", "",
        static_cast<double>(stats.config_pushes));
  f.Add("herd_controlplane_config_rejections_total", "counter",
        "Config snapshots hosts rejected.", "", static_cast<double>(stats.config_nacks));
  return f.Render();
}

}  // namespace herd::controlplane
