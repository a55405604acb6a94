#include "agent/procfs/host_sampler.h"

#include <fstream>
#include <sstream>

namespace herd::agent {

herd::v1::HostUsage HostSampler::Sample() {
  herd::v1::HostUsage u;
  {
    std::ifstream f(root_ + "/stat");
    std::string cpu;
    uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0,
             steal = 0;
    if (f >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal &&
        cpu == "cpu") {
      uint64_t busy = user + nice + system + irq + softirq + steal;
      uint64_t total = busy + idle + iowait;
      if (last_total_ > 0 && total > last_total_ && busy >= last_busy_) {
        u.set_cpu_percent(100.0 * static_cast<double>(busy - last_busy_) /
                          static_cast<double>(total - last_total_));
      }
      last_busy_ = busy;
      last_total_ = total;
    }
  }
  {
    std::ifstream f(root_ + "/meminfo");
    std::string line;
    while (std::getline(f, line)) {
      std::istringstream ss(line);
      std::string key;
      uint64_t kb = 0;
      ss >> key >> kb;
      if (key == "MemTotal:") u.set_memory_total_bytes(kb * 1024);
      if (key == "MemAvailable:") u.set_memory_available_bytes(kb * 1024);
    }
  }
  {
    std::ifstream f(root_ + "/loadavg");
    double l1 = 0, l5 = 0, l15 = 0;
    if (f >> l1 >> l5 >> l15) {
      u.set_load1(l1);
      u.set_load5(l5);
      u.set_load15(l15);
    }
  }
  return u;
}

}  // namespace herd::agent
