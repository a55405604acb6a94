// {{NAME}}: a native Herd module on the C++ SDK (herd_sdk/). Install it with
//   agentctl install .        (run.sh builds it on first start and after edits)
#include <chrono>
#include <random>
#include <string>

#include "herd/module.h"

int main() {
  // Defaults come from package.json "config"; `agentctl set {{NAME}}:greeting hi` overrides.
  auto mod = herd::Module::Init({.main_probes = {"ticks", "latency"}});
  const auto interval = std::chrono::milliseconds(mod->GetInt("interval", 1000));
  const std::string greeting = mod->GetString("greeting", "hello");

  auto& ticks = mod->counter("ticks");
  auto& latency = mod->histogram("latency", "ms");  // p95 of the last minute

  // agentctl action {{NAME}} greet --param name=you
  // Handlers run on the SDK thread: keep them short (or keep `reply` and answer later).
  mod->Action("greet", [greeting](const nlohmann::json& params, herd::Reply reply) {
    std::string name = "stranger";
    if (auto it = params.find("name"); it != params.end() && it->is_string() && !it->empty()) {
      name = it->get<std::string>();
    }
    reply(greeting + ", " + name);
  });

  mod->EmitEvent("started", {{"interval_ms", interval.count()}});
  mod->NotifyIssue("{{NAME}} started: this is how an issue looks");

  std::mt19937 rng(std::random_device{}());
  std::uniform_real_distribution<double> ms(0.0, 10.0);
  // Until SIGTERM (how the agent stops modules) or SIGINT.
  while (!mod->WaitForShutdown(interval)) {
    ticks.Inc();
    latency.Observe(ms(rng));
  }
  mod->Stop();
  mod->Flush();
  return 0;
}
