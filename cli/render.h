// Rendering of agent replies for people (aligned tables, PM2-style units) and for programs
// (JSON in the protobuf JSON mapping, snake_case field names, zero values included), kept
// apart from main so the formats are unit-tested.
#pragma once

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "google/protobuf/message.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "nlohmann/json.hpp"
#include "herd/v1/agent.pb.h"
#include "herd/v1/types.pb.h"

namespace herd::cli {

// "online", "stopped", "errored", "waiting restart", ...
std::string StateName(herd::v1::UnitState s);

// The `list` table: name, status, pid, cpu, memory, restarts, uptime.
std::string RenderUnitTable(const std::vector<herd::v1::UnitStatus>& units, absl::Time now);

// `describe`: spec fields, status and recent events as "key: value" lines.
std::string RenderDetail(const herd::v1::UnitDetail& detail, absl::Time now);
// A module's issues, grouped (count, first and last time), latest last.
std::string RenderIssues(const herd::v1::ModuleInfo& m);

// `top`: one screen, with CPU and memory bars, and the agent's own usage on top.
// `top`'s module pane (as pm2 monit's): each module's main probes and its last log lines.
std::string RenderModulePane(const std::vector<herd::v1::UnitStatus>& units,
                             const std::map<std::string, std::vector<std::string>>& last_lines);
std::string RenderTop(const herd::v1::AgentInfo& info,
                      const std::vector<herd::v1::UnitStatus>& units, absl::Time now);

// A module's configuration: key, default, override, effective value and its source.
std::string RenderConfig(const herd::v1::ModuleConfig& config);
// The module part of `describe`: meta, widget, config, probes, actions, issues, events.
std::string RenderModule(const herd::v1::ModuleInfo& module);
// A probe's value with its unit.
std::string ProbeText(const herd::v1::Probe& probe);

// What -o json / -o yaml print (json_output.h: numbers, enum words, JSON fields as values).
enum class OutputFormat { kJson, kYaml };
void SetOutputFormat(OutputFormat format);
// Any message in the chosen format: pretty JSON, or YAML; `one_line` for streams (one JSON
// document per line, or YAML documents after "---").
std::string ToJson(const google::protobuf::Message& m, bool one_line = false);
std::string StructuredText(const nlohmann::json& value, bool one_line = false);

// How a host is named in a listing: its hostname, and its id beside it when another host
// of the listing has the same hostname (cloned machines, containers named alike).
template <typename T>
std::function<std::string(const T&)> HostNamer(const google::protobuf::RepeatedPtrField<T>& items) {
  std::map<std::string, std::set<std::string>> ids;
  for (const auto& x : items) ids[x.hostname()].insert(x.host_id());
  return [ids](const T& x) {
    auto it = ids.find(x.hostname());
    return it != ids.end() && it->second.size() > 1
               ? absl::StrCat(x.hostname(), " (", x.host_id(), ")")
               : x.hostname();
  };
}

// A table: first row is the header; columns padded to their widest cell.
std::string FormatTable(const std::vector<std::vector<std::string>>& rows);

}  // namespace herd::cli
