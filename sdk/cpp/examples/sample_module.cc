// A sample native module on the C++ SDK: probes of every kind and two actions.
//   agentctl action <module> echo --param x=1     -> replies {"x":"1"}
//   agentctl action <module> fail                 -> replies {"error": ...} and reports an issue
#include <chrono>
#include <random>
#include <stdexcept>

#include "herd/module.h"

int main() {
  auto mod = herd::Module::Init({.main_probes = {"ticks", "load"}, .description = "C++ SDK sample"});
  auto& load = mod->gauge("load", "%");
  auto& ticks = mod->counter("ticks");
  auto& latency = mod->histogram("latency", "ms", herd::Aggregation::kP95);
  auto& requests = mod->meter("requests");

  mod->Action("echo", [](const nlohmann::json& params, herd::Reply reply) { reply(params); });
  mod->Action("fail", [](const nlohmann::json&, herd::Reply) {
    throw std::runtime_error("fail was asked to fail");
  });

  const auto interval = std::chrono::milliseconds(mod->GetInt("interval", 500));
  std::mt19937 rng(std::random_device{}());
  std::uniform_real_distribution<double> dist(0.0, 100.0);
  while (!mod->WaitForShutdown(interval)) {
    ticks.Inc();
    load.Set(dist(rng));
    latency.Observe(dist(rng) / 10.0);
    requests.Mark();
  }
  mod->Stop();
  mod->Flush();
  return 0;
}
