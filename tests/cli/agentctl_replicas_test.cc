// agentctl --controlplane A,B,C: the list is checked, and the fleet commands go to the first
// replica that accepts a connection (a Fleet service on loopback plays the live one; the
// others are ports nothing listens on).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "cli/agentctl_app.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "herd/v1/fleet.grpc.pb.h"

namespace herd::cli {
namespace {

using ::testing::HasSubstr;

// Answers ListHosts with one host named after the replica, so the output says who answered.
class NamedFleet final : public herd::v1::Fleet::Service {
 public:
  explicit NamedFleet(std::string name) : name_(std::move(name)) {}
  grpc::Status ListHosts(grpc::ServerContext*, const herd::v1::ListHostsRequest*,
                         herd::v1::ListHostsResponse* resp) override {
    auto* h = resp->add_hosts();
    h->set_host_id(name_);
    h->set_hostname(name_);
    return grpc::Status::OK;
  }

 private:
  std::string name_;
};

struct Outcome {
  int exit_code = -1;
  std::string out, err;
};

Outcome RunAgentctl(std::vector<std::string> args) {
  unsetenv("HERD_CONTROLPLANE");
  unsetenv("HERD_TOKEN_FILE");
  setenv("HERD_TOKEN", "ht_test", 1);
  args.insert(args.begin(), {"agentctl", "--home", "/nonexistent/herd-home", "--timeout", "1"});
  CLI::App app;
  app.require_subcommand(1);
  AgentctlContext ctx;
  CommandTable table;
  AddAgentctlCommands(app, ctx, table);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  Outcome out;
  testing::internal::CaptureStdout();
  testing::internal::CaptureStderr();
  app.parse(static_cast<int>(argv.size()), argv.data());
  ctx.OptionsParsed();
  out.exit_code = table.Run();
  fflush(stdout);
  out.out = testing::internal::GetCapturedStdout();
  out.err = testing::internal::GetCapturedStderr();
  unsetenv("HERD_TOKEN");
  return out;
}

// A loopback port nothing listens on: bound, then closed.
std::string DeadAddress() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ADD_FAILURE() << "cannot bind a loopback port";
  }
  close(fd);
  return absl::StrCat("127.0.0.1:", ntohs(a.sin_port));
}

TEST(AgentctlReplicas, FleetCommandsUseTheFirstReplicaThatAnswers) {
  NamedFleet live("replica-c");
  int port = 0;
  grpc::ServerBuilder b;
  b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  b.RegisterService(&live);
  std::unique_ptr<grpc::Server> server = b.BuildAndStart();
  ASSERT_NE(port, 0);
  const std::string a = DeadAddress(), bb = DeadAddress();
  const std::string c = absl::StrCat("127.0.0.1:", port);
  Outcome r = RunAgentctl({"--controlplane", absl::StrCat(a, ",", bb, ",", c), "hosts"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("replica-c"));
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat("replica at ", a, " does not answer")));
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat("replica at ", bb, " does not answer")));
  server->Shutdown();
}

TEST(AgentctlReplicas, NoReplicaAnsweringIsReportedWithTheList) {
  const std::string list = absl::StrCat(DeadAddress(), ",", DeadAddress());
  Outcome r = RunAgentctl({"--controlplane", list, "hosts"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat("none of the control plane replicas (", list,
                                            ") answered")));
}

TEST(AgentctlReplicas, ABadListIsRefusedBeforeDialling) {
  Outcome r = RunAgentctl({"--controlplane", "127.0.0.1:1,,127.0.0.1:2", "hosts"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("--controlplane \"127.0.0.1:1,,127.0.0.1:2\": item 2 is empty"));
}

}  // namespace
}  // namespace herd::cli
