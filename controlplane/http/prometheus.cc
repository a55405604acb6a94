#include "controlplane/http/prometheus.h"

#include <unistd.h>

#include <charconv>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <unordered_map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/atomic_file.h"
#include "common/proc_stat.h"

namespace herd::controlplane {
namespace {

// The exposition format's escaping: backslash and newline, and double quotes in label values.
std::string Escape(const std::string& text, bool quotes) {
  std::string out;
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quotes) {
      out += "\\\"";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// Sample values and `le` bounds: integers as integers; other numbers %g-style with the fewest
// digits that read back exactly, as the Go client writes them (0.0005, not 5e-04: `le` values
// are compared as strings by queries and dashboards); the exposition's special values.
std::string Number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::trunc(v) && std::fabs(v) < 1e15) return absl::StrCat(static_cast<int64_t>(v));
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::general);
  return ec == std::errc() ? std::string(buf, end) : absl::StrCat(v);
}

// Samples of one metric family, written together under one HELP/TYPE header; families in
// name order, samples in the order they were added.
class Families {
 public:
  void Add(absl::string_view name, const char* type, absl::string_view help,
           absl::string_view labels, double value) {
    AddSample(name, type, help, name, labels, value);
  }

  // `_bucket` (cumulative, then +Inf), `_sum` and `_count` of one histogram series.
  void AddHistogram(const std::string& name, const std::string& help, const std::string& labels,
                    const LatencyHistogram::Snapshot& h) {
    const std::string sep = labels.empty() ? "" : ",";
    for (size_t i = 0; i < h.bounds.size() && i < h.cumulative.size(); ++i) {
      AddSample(name, "histogram", help, name + "_bucket",
                absl::StrCat(labels, sep, "le=\"", Number(h.bounds[i]), "\""),
                static_cast<double>(h.cumulative[i]));
    }
    AddSample(name, "histogram", help, name + "_bucket", absl::StrCat(labels, sep, "le=\"+Inf\""),
              static_cast<double>(h.count));
    AddSample(name, "histogram", help, name + "_sum", labels, h.sum_seconds);
    AddSample(name, "histogram", help, name + "_count", labels, static_cast<double>(h.count));
  }

  void Clear() { families_.clear(); }

  void RenderTo(std::string& out) const {
    for (const auto& [name, f] : families_) {
      absl::StrAppend(&out, "# HELP ", name, " ", EscapeHelp(f.help), "\n# TYPE ", name, " ",
                      f.type, "\n", f.samples);
    }
  }

  // Merges `other`'s families into these (a family in both keeps this one's header).
  void Merge(Families&& other) {
    for (auto& [name, f] : other.families_) {
      auto [it, inserted] = families_.try_emplace(name, std::move(f));
      if (!inserted) it->second.samples += f.samples;
    }
    other.families_.clear();
  }

 private:
  void AddSample(absl::string_view family, const char* type, absl::string_view help,
                 absl::string_view sample, absl::string_view labels, double value) {
    auto it = families_.find(family);
    if (it == families_.end()) {
      it = families_.emplace(std::string(family), Family{}).first;
      it->second.type = type;
      it->second.help = std::string(help);
    }
    std::string& out = it->second.samples;
    if (labels.empty()) {
      absl::StrAppend(&out, sample, " ", Number(value), "\n");
    } else {
      absl::StrAppend(&out, sample, "{", labels, "} ", Number(value), "\n");
    }
  }
  // HELP text escapes only backslash and newline.
  static std::string EscapeHelp(const std::string& help) { return Escape(help, false); }
  struct Family {
    std::string type, help, samples;
  };
  std::map<std::string, Family, std::less<>> families_;
};

std::string Labels(std::initializer_list<std::pair<const char*, std::string>> kv) {
  std::string out;
  for (const auto& [k, v] : kv) {
    absl::StrAppend(&out, out.empty() ? "" : ",", k, "=\"", EscapeLabelValue(v), "\"");
  }
  return out;
}

// UNIT_STATE_WAITING_RESTART → "waiting_restart".
std::string StateName(herd::v1::UnitState state) {
  const std::string& full = herd::v1::UnitState_Name(state);
  absl::string_view name = full;
  if (!absl::ConsumePrefix(&name, "UNIT_STATE_") || name.empty()) return "unspecified";
  return absl::AsciiStrToLower(name);
}

bool IsUpper(char c) { return c >= 'A' && c <= 'Z'; }
bool IsLower(char c) { return c >= 'a' && c <= 'z'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// The words of a probe name, lower case: runs of ASCII letters and digits, split where
// camelCase or PascalCase starts a word ("reqMin" → req min; "HTTPRequests" → http requests;
// "p95Latency" → p95 latency; "5XX" stays one word). Anything else (spaces, punctuation,
// non-ASCII bytes) only separates words.
std::vector<std::string> Words(const std::string& name) {
  std::vector<std::string> words;
  std::string word;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (IsUpper(c)) {
      const char prev = i > 0 ? name[i - 1] : '\0';
      const bool next_lower = i + 1 < name.size() && IsLower(name[i + 1]);
      if (!word.empty() && (IsLower(prev) || ((IsUpper(prev) || IsDigit(prev)) && next_lower))) {
        words.push_back(std::move(word));
        word.clear();
      }
      word.push_back(static_cast<char>(c - 'A' + 'a'));
    } else if (IsLower(c) || IsDigit(c)) {
      word.push_back(c);
    } else if (!word.empty()) {
      words.push_back(std::move(word));
      word.clear();
    }
  }
  if (!word.empty()) words.push_back(std::move(word));
  return words;
}

// A word `promtool check metrics` refuses anywhere in a gauge's name (client_golang's promlint,
// which lints each "_"-separated word): an abbreviated unit ("metric names should not contain
// abbreviated units"), a unit other than a base unit, with or without an SI prefix ("use base
// unit ..."), or a metric type ("metric name should not include type ..."). Such words are
// left out of probe families rather than spelled differently: a probe's value is in the unit
// the module chose, which no name can promise, so the unit is the unit label's business (and
// the probe label keeps the name as written).
bool RefusedWord(absl::string_view w) {
  static constexpr absl::string_view kAbbreviations[] = {
      "s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb", "tb", "pb", "m", "h", "d"};
  static constexpr absl::string_view kTypes[] = {"counter", "gauge", "histogram", "summary"};
  static constexpr absl::string_view kBaseUnits[] = {
      "amperes", "bytes", "celsius", "grams", "joules", "meters", "metres", "seconds", "volts"};
  // "kelvin" is a base unit to some promlint versions and not to others.
  static constexpr absl::string_view kOtherUnits[] = {
      "kelvin", "kelvins", "minutes", "hours", "days", "weeks", "fahrenheit", "rankine",
      "inches", "yards", "miles", "bits", "calories", "pounds", "ounces"};
  static constexpr absl::string_view kPrefixes[] = {
      "pico", "nano", "micro", "milli", "centi", "deci", "deca", "hecto", "kilo",
      "kibi", "mega", "mibi", "giga", "gibi", "tera", "tebi", "peta", "pebi"};
  const auto in = [](absl::string_view word, const auto& list) {
    for (absl::string_view x : list) {
      if (word == x) return true;
    }
    return false;
  };
  if (in(w, kAbbreviations) || in(w, kTypes) || in(w, kOtherUnits)) return true;
  for (absl::string_view prefix : kPrefixes) {
    absl::string_view rest = w;
    if (absl::ConsumePrefix(&rest, prefix) && (in(rest, kBaseUnits) || in(rest, kOtherUnits))) {
      return true;
    }
  }
  return false;
}

// The hub's counters: hosts, agents' messages, config pushes, per-host limits.
void RenderHub(const Hub::Stats& stats, Families& f) {
  f.Add("herd_controlplane_hosts", "gauge", "Hosts known to the control plane.", "",
        static_cast<double>(stats.hosts));
  f.Add("herd_controlplane_hosts_online", "gauge", "Hosts online (stream up or within lease).",
        "", static_cast<double>(stats.online));
  f.Add("herd_controlplane_connected_agents", "gauge", "Agent streams connected now.", "",
        static_cast<double>(stats.connected));
  f.Add("herd_controlplane_agent_messages_total", "counter",
        "Messages received from agents (hellos, metric batches, events, results...).", "",
        static_cast<double>(stats.agent_messages));
  f.Add("herd_controlplane_metric_batches_total", "counter", "Metric batches received.", "",
        static_cast<double>(stats.batches_received));
  f.AddHistogram("herd_controlplane_metric_batch_delay_seconds",
                 "From a metric batch's time (the agent's clock) to the control plane processing "
                 "it; batches replayed after a reconnect are left out, and of a group of "
                 "batches sent together only the newest is timed.",
                 "", stats.batch_delay);
  f.Add("herd_controlplane_agent_dropped_batches_total", "counter",
        "Metric batches agents reported dropping while disconnected.", "",
        static_cast<double>(stats.batches_dropped_by_agents));
  f.Add("herd_controlplane_config_pushes_total", "counter", "Config snapshots sent to hosts.", "",
        static_cast<double>(stats.config_pushes));
  f.Add("herd_controlplane_config_rejections_total", "counter",
        "Config snapshots hosts rejected.", "", static_cast<double>(stats.config_nacks));

  for (size_t i = 0; i < kLimitKinds; ++i) {
    f.Add("herd_controlplane_agent_limited_total", "counter",
          "Items of agents' messages cut past a per-host limit, by limit (units, probes, "
          "modules, names, text, batch_bytes, inventory_bytes, series); the log names the host.",
          Labels({{"limit", std::string(LimitName(static_cast<Limit>(i)))}}),
          static_cast<double>(stats.limited[i]));
  }
  f.Add("herd_controlplane_join_token_reads_total", "counter",
        "Reads of the join token's hash from the store (agents' connects use a cached copy).",
        "", static_cast<double>(stats.join_token_reads));
  f.Add("herd_controlplane_joins_refused_total", "counter",
        "Registrations refused because too many were waiting for the store at once (the "
        "agents retry after a backoff).",
        "", static_cast<double>(stats.joins_refused));
  f.Add("herd_controlplane_audit_dropped_total", "counter",
        "Audit entries of registrations dropped because 10,000 were already waiting for the "
        "store (logged).",
        "", static_cast<double>(stats.audit_dropped));
}

// The Fleet API's streams and the rollouts.
void RenderStreamsAndRollouts(const SelfMetrics& self, Families& f) {
  f.Add("herd_controlplane_fleet_streams", "gauge",
        "Fleet API server streams open now (WatchMetrics, WatchRollout, StreamLogs).", "",
        static_cast<double>(self.fleet_streams_open));
  f.Add("herd_controlplane_fleet_stream_dropped_messages_total", "counter",
        "Messages dropped from Fleet API streams whose reader fell behind (queue full).", "",
        static_cast<double>(self.fleet_stream_messages_dropped));
  f.Add("herd_controlplane_fleet_streams_ended_stalled_total", "counter",
        "Fleet API streams ended because their reader read nothing for --stream-stall-timeout.",
        "", static_cast<double>(self.fleet_streams_ended_stalled));
  f.Add("herd_controlplane_fleet_streams_refused_total", "counter",
        "Fleet API streams refused: their token had --max-streams-per-token open, or every "
        "slot was taken.",
        "", static_cast<double>(self.fleet_streams_refused));

  f.Add("herd_controlplane_rollouts_running", "gauge", "Rollouts running now.", "",
        static_cast<double>(self.rollouts_running));
  const char* const kRolloutsHelp = "Rollouts finished since the control plane started, by state.";
  f.Add("herd_controlplane_rollouts_total", "counter", kRolloutsHelp,
        Labels({{"state", "succeeded"}}), static_cast<double>(self.rollouts_succeeded));
  f.Add("herd_controlplane_rollouts_total", "counter", kRolloutsHelp,
        Labels({{"state", "failed"}}), static_cast<double>(self.rollouts_failed));
  f.Add("herd_controlplane_rollouts_total", "counter", kRolloutsHelp,
        Labels({{"state", "aborted"}}), static_cast<double>(self.rollouts_aborted));
}

void RenderArtifacts(const ArtifactStore::Counts& a, Families& f) {
  f.Add("herd_controlplane_artifacts_uploaded_total", "counter",
        "Module artifacts uploaded and kept (the same bytes again count once).", "",
        static_cast<double>(a.uploaded));
  f.Add("herd_controlplane_artifact_uploads_refused_total", "counter",
        "Artifact uploads refused (too large, damaged, not a module, too many at once, disk).",
        "", static_cast<double>(a.uploads_refused));
  f.Add("herd_controlplane_artifact_fetches_total", "counter",
        "Artifact fetches by agents started.", "", static_cast<double>(a.fetches));
  f.Add("herd_controlplane_artifact_fetches_refused_total", "counter",
        "Artifact fetches refused because --max-artifact-fetches were in progress.", "",
        static_cast<double>(a.fetches_refused));
  f.Add("herd_controlplane_artifact_fetches", "gauge", "Artifact fetches in progress now.", "",
        static_cast<double>(a.fetching));
  f.Add("herd_controlplane_artifact_served_bytes_total", "counter",
        "Artifact bytes sent to agents.", "", static_cast<double>(a.bytes_served));
}

void RenderHttp(const HttpStats& h, Families& f) {
  f.Add("herd_controlplane_http_connections", "gauge", "HTTP connections open now.", "",
        static_cast<double>(h.connections));
  f.Add("herd_controlplane_http_streams", "gauge", "HTTP ndjson streams open now.", "",
        static_cast<double>(h.streams));
  const char* const kClosed =
      "HTTP connections refused or closed by a limit, by reason: total_limit and ip_limit "
      "(refused), idle_shed (an idle one closed to make room), timeout (no request in time), "
      "tls_handshake (failed, e.g. no client certificate).";
  for (const auto& [reason, n] :
       {std::pair{"total_limit", h.refused_total_limit},
        std::pair{"ip_limit", h.refused_ip_limit}, std::pair{"idle_shed", h.shed_idle},
        std::pair{"timeout", h.timed_out},
        std::pair{"tls_handshake", h.tls_handshake_failed}}) {
    f.Add("herd_controlplane_http_connections_closed_total", "counter", kClosed,
          Labels({{"reason", reason}}), static_cast<double>(n));
  }
  const char* const kShed =
      "HTTP requests answered without being run, by reason: queue_full (503) and ip_limit "
      "(429, too many in progress from one address).";
  f.Add("herd_controlplane_http_requests_shed_total", "counter", kShed,
        Labels({{"reason", "queue_full"}}), static_cast<double>(h.requests_shed_queue_full));
  f.Add("herd_controlplane_http_requests_shed_total", "counter", kShed,
        Labels({{"reason", "ip_limit"}}), static_cast<double>(h.requests_shed_ip_limit));
  const char* const kStreams =
      "HTTP streams refused (total_limit, token_limit) or ended because their reader did not "
      "read (stalled, queue_full), by reason.";
  for (const auto& [reason, n] : {std::pair{"total_limit", h.streams_refused_total},
                                  std::pair{"token_limit", h.streams_refused_token},
                                  std::pair{"stalled", h.streams_ended_stalled},
                                  std::pair{"queue_full", h.streams_ended_queue_full}}) {
    f.Add("herd_controlplane_http_streams_closed_total", "counter", kStreams,
          Labels({{"reason", reason}}), static_cast<double>(n));
  }
}

// The process_* families every Prometheus client library exports.
void RenderProcess(const ProcessMetrics& p, Families& f) {
  f.Add("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
        "", p.cpu_seconds);
  f.Add("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", "",
        p.resident_bytes);
  f.Add("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", "",
        p.virtual_bytes);
  f.Add("process_open_fds", "gauge", "Number of open file descriptors.", "", p.open_fds);
  if (p.max_fds > 0) {
    f.Add("process_max_fds", "gauge", "Maximum number of open file descriptors.", "",
          p.max_fds);
  }
  f.Add("process_start_time_seconds", "gauge",
        "Start time of the process since unix epoch in seconds.", "", p.start_time_seconds);
}

void RenderSelf(const SelfMetrics& self, Families& f) {
  RenderHub(self.hub, f);
  RenderStreamsAndRollouts(self, f);
  for (const auto& op : self.store) {
    const std::string lo = Labels({{"op", op.op}});
    f.AddHistogram("herd_controlplane_store_operation_duration_seconds",
                   "Duration of store calls, by kind (read, write).", lo, op.latency);
    f.Add("herd_controlplane_store_errors_total", "counter",
          "Store calls that failed (not-found and invalid requests are answers, not errors).",
          lo, static_cast<double>(op.errors));
  }
  if (self.http) RenderHttp(*self.http, f);
  if (self.artifacts) RenderArtifacts(*self.artifacts, f);
  if (self.process) RenderProcess(*self.process, f);
}

}  // namespace

// ---------------------------------------------------------------------------------------

struct FleetExposition::Impl {
  Families fleet;
  Families probes;
  // Probe name → its family (sanitising is the costliest step and names repeat per host).
  std::unordered_map<std::string, std::string> probe_family;
  uint64_t probe_series = 0;
  bool probes_omitted = false;
  uint64_t hosts_probes_omitted = 0;

  // The host's own families; false when it is offline (its modules are then left out).
  bool AddHostFamilies(const herd::v1::Host& h);
  // One unit's families, and its numeric probes unless the host is past its own cap.
  void AddUnit(const std::string& host_id, const herd::v1::UnitSample& u, bool probes_shown,
               int64_t now_ms, uint64_t max_probe_series);
  void AddProbe(const std::string& host_id, const std::string& unit, const herd::v1::Probe& p,
                uint64_t max_probe_series);
};

FleetExposition::FleetExposition(absl::Time now, ExpositionOptions options)
    : impl_(std::make_unique<Impl>()), now_(now), options_(options) {}

FleetExposition::~FleetExposition() = default;

uint64_t FleetExposition::probe_series() const { return impl_->probe_series; }
bool FleetExposition::probes_omitted() const { return impl_->probes_omitted; }
uint64_t FleetExposition::hosts_probes_omitted() const { return impl_->hosts_probes_omitted; }

bool FleetExposition::Impl::AddHostFamilies(const herd::v1::Host& h) {
  Families& f = fleet;
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
  return h.online();
}

void FleetExposition::Impl::AddUnit(const std::string& host_id, const herd::v1::UnitSample& u,
                                    bool probes_shown, int64_t now_ms,
                                    uint64_t max_probe_series) {
  Families& f = fleet;
  const std::string lu = Labels({{"host", host_id}, {"module", u.name()}});
  const bool online = u.state() == herd::v1::UNIT_STATE_ONLINE;
  f.Add("herd_module_up", "gauge", "1 when the module (or unit) is online.", lu, online ? 1 : 0);
  f.Add("herd_module_state", "gauge",
        "The module's state as a label (online, launching, stopping, stopped, "
        "waiting_restart, errored); always 1.",
        absl::StrCat(lu, ",", Labels({{"state", StateName(u.state())}})), 1);
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
  if (!probes_shown) return;
  std::set<std::string> probes_seen;
  for (const auto& p : u.probes()) {
    // A probe reported twice by a faulty agent would make duplicate series: the first counts.
    if (!p.numeric() || !probes_seen.insert(p.name()).second) continue;
    AddProbe(host_id, u.name(), p, max_probe_series);
  }
}

void FleetExposition::Impl::AddProbe(const std::string& host_id, const std::string& unit,
                                     const herd::v1::Probe& p, uint64_t max_probe_series) {
  // Past the cap no probe series is shown at all (a partial set would read as a
  // fleet where some hosts lack the probe); the count goes on, for the gauge.
  if (++probe_series > max_probe_series) {
    if (!probes_omitted) {
      probes_omitted = true;
      probes.Clear();
      probe_family.clear();
    }
    return;
  }
  auto fam = probe_family.find(p.name());
  if (fam == probe_family.end()) {
    fam = probe_family.emplace(p.name(), ProbeMetricName(p.name())).first;
  }
  const std::string lp =
      p.unit().empty()
          ? Labels({{"host", host_id}, {"module", unit}, {"probe", p.name()}})
          : Labels({{"host", host_id}, {"module", unit}, {"probe", p.name()}, {"unit", p.unit()}});
  // Nothing of the module's in HELP: one text for every probe family.
  probes.Add(fam->second, "gauge",
             "Module probe: latest value of the module's numeric probe (original name in "
             "label probe, unit in label unit).",
             lp, p.number());
}

void FleetExposition::AddHost(const herd::v1::HostDetail& d) {
  const auto& h = d.host();
  // An offline host's modules are not reported: their last values would read as current
  // (herd_host_up says the host is gone).
  if (!impl_->AddHostFamilies(h)) return;
  // A host past its own cap shows none of its probes (a partial set would read as probes
  // it lacks) and leaves the fleet's budget to the others.
  uint64_t host_probes = 0;
  for (const auto& u : d.units()) {
    for (const auto& p : u.probes()) host_probes += p.numeric() ? 1 : 0;
  }
  const bool host_probes_shown = host_probes <= options_.max_probe_series_per_host;
  if (!host_probes_shown) {
    ++impl_->hosts_probes_omitted;
    impl_->fleet.Add("herd_host_probe_series_omitted", "gauge",
                     "Numeric probe series of the host left out of this exposition because it "
                     "has more than --metrics-max-probe-series-per-host (only such hosts are "
                     "listed).",
                     Labels({{"host", h.host_id()}}), static_cast<double>(host_probes));
  }
  const int64_t now_ms = absl::ToUnixMillis(now_);
  std::set<std::string> units_seen;
  for (const auto& u : d.units()) {
    // A unit reported twice by a faulty agent would make duplicate series, which invalidate
    // the whole exposition: the first one counts.
    if (!units_seen.insert(u.name()).second) continue;
    impl_->AddUnit(h.host_id(), u, host_probes_shown, now_ms, options_.max_probe_series);
  }
}

std::string FleetExposition::Finish(const SelfMetrics& self) {
  Families own;
  RenderSelf(self, own);
  own.Add("herd_controlplane_probe_series", "gauge",
          "Numeric probe series in the fleet now (exposed unless above "
          "--metrics-max-probe-series).",
          "", static_cast<double>(impl_->probe_series));
  own.Add("herd_controlplane_probe_series_omitted_hosts", "gauge",
          "Hosts whose probe series were left out of this exposition because each has more "
          "than --metrics-max-probe-series-per-host.",
          "", static_cast<double>(impl_->hosts_probes_omitted));
  own.Add("herd_controlplane_probe_series_omitted", "gauge",
          "1 when the probe series were left out of this exposition because there are more "
          "than --metrics-max-probe-series.",
          "", impl_->probes_omitted ? 1 : 0);
  Families& out = impl_->fleet;
  if (!impl_->probes_omitted) out.Merge(std::move(impl_->probes));
  out.Merge(std::move(own));
  std::string text;
  out.RenderTo(text);
  return text;
}

std::string RenderControlPlane(const SelfMetrics& self) {
  Families own;
  RenderSelf(self, own);
  std::string text;
  own.RenderTo(text);
  return text;
}

std::string ProbeMetricName(const std::string& probe_name) {
  std::string name;
  for (const std::string& w : Words(probe_name)) {
    if (RefusedWord(w)) continue;
    absl::StrAppend(&name, name.empty() ? "" : "_", w);
  }
  if (name.empty()) name = "unnamed";
  if (IsDigit(name[0])) name.insert(0, "_");
  // Names a gauge may not end with: the samples of counters, histograms and summaries
  // (promtool refuses _total, _count, _sum, _bucket), and OpenMetrics' _created and _info.
  for (const char* suffix : {"_total", "_count", "_sum", "_bucket", "_created", "_info"}) {
    if (absl::EndsWith(absl::StrCat("_", name), suffix)) {
      name += "_value";
      break;
    }
  }
  return "herd_probe_" + name;
}

std::string EscapeLabelValue(const std::string& value) { return Escape(value, true); }

std::string RenderPrometheus(const std::vector<herd::v1::HostDetail>& hosts,
                             const SelfMetrics& self, absl::Time now, ExpositionOptions options) {
  FleetExposition e(now, options);
  for (const auto& d : hosts) e.AddHost(d);
  return e.Finish(self);
}

absl::StatusOr<ProcessMetrics> ReadProcessMetrics(const std::string& proc_root) {
  const std::string self = proc_root + "/self";
  absl::StatusOr<std::string> text = ReadFileToString(self + "/stat");
  if (!text.ok()) return absl::UnavailableError(text.status().message());
  absl::StatusOr<ProcStat> stat = ParseProcStat(*text);
  if (!stat.ok()) {
    return absl::DataLossError(absl::StrCat(self, "/stat ", stat.status().message()));
  }
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  ProcessMetrics m;
  m.cpu_seconds = static_cast<double>(stat->cpu_ticks()) / ticks;
  m.virtual_bytes = static_cast<double>(stat->vsize_bytes);
  m.resident_bytes = static_cast<double>(stat->rss_pages) * page;

  // Start time: boot time (btime in /proc/stat) plus the start in ticks since boot.
  absl::StatusOr<std::string> system = ReadFileToString(proc_root + "/stat");
  if (!system.ok()) return absl::DataLossError(system.status().message());
  absl::StatusOr<uint64_t> btime = ParseBootTime(*system);
  if (!btime.ok()) {
    return absl::DataLossError(absl::StrCat(proc_root, "/stat ", btime.status().message()));
  }
  m.start_time_seconds =
      static_cast<double>(*btime) + static_cast<double>(stat->start_ticks) / ticks;

  std::error_code ec;
  size_t fds = 0;
  for (auto it = std::filesystem::directory_iterator(self + "/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++fds;
  }
  m.open_fds = static_cast<double>(fds);

  // "Max open files            1024                 1048576              files"
  if (auto limits = ReadFileToString(self + "/limits"); limits.ok()) {
    for (absl::string_view line : absl::StrSplit(*limits, '\n')) {
      if (!absl::ConsumePrefix(&line, "Max open files")) continue;
      std::vector<absl::string_view> cols = absl::StrSplit(line, ' ', absl::SkipEmpty());
      uint64_t soft = 0;
      if (!cols.empty() && absl::SimpleAtoi(cols[0], &soft)) m.max_fds = static_cast<double>(soft);
    }
  }
  return m;
}

}  // namespace herd::controlplane
