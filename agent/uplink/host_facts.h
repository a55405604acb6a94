// What the agent tells the control plane about its host: a stable host id (made once, kept
// in $HERD_HOME/host_id) and the facts sent in Hello (hostname, boot id, kernel, CPUs,
// memory). Read from the system at each Hello; cheap enough for the loop.
#pragma once

#include <string>

#include "herd/v1/gateway.pb.h"

namespace herd::agent {

// A stable, readable id: the hostname's safe characters and 12 random hex digits.
std::string NewHostId();

// Sets hostname, boot_id, kernel, arch, cpu_count and memory_total_bytes.
void FillHostFacts(herd::v1::Hello* hello);

// The file's text without surrounding whitespace; "" when it cannot be read.
std::string ReadTrimmed(const std::string& path);

}  // namespace herd::agent
