// Fleet deployments end to end on loopback (issue 24): a real controlplane and three real
// agentd (labels env/role). A generated module is declared at a selector (only those hosts
// install it), upgraded, declared globally while one host is offline (it converges when it
// returns), undeployed scope by scope (hosts fall back to the next declaration, then remove
// it), and a source that cannot install is shown as drift with its reason. A module
// installed by hand is left alone throughout.
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/file_util.h"
#include "common/sha256.h"
#include "grpcpp/grpcpp.h"
#include "herd/v1/gateway.grpc.pb.h"
#include "tests/integration/agent_harness.h"

namespace herd::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using json = nlohmann::json;

constexpr int kAgents = 3;

std::string Sha256Of(const std::string& bytes) {
  Sha256 h;
  h.Update(bytes);
  return h.HexDigest();
}
const char* const kLabels[kAgents] = {"env=prod,role=web", "env=prod,role=db", "env=dev,role=web"};

class DeployTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cp_.Start({"--lease", "2s", "--metrics-interval-ms", "200"})) << cp_.last_error();
    for (int i = 0; i < kAgents; ++i) {
      agents_[i] = std::make_unique<AgentHarness>();
      ASSERT_TRUE(agents_[i]->StartAgent(cp_.AgentArgs(kLabels[i]))) << agents_[i]->last_error();
      json info = agents_[i]->CtlJson({"info"});
      host_ids_[i] = info.is_object() ? info.value("host_id", "") : "";
      ASSERT_FALSE(host_ids_[i].empty());
    }
    ASSERT_TRUE(WaitFor([&] {
      json h = cp_.CtlJson({"hosts"});
      return h.is_object() && h.contains("hosts") && h["hosts"].size() == kAgents;
    }, absl::Seconds(20))) << cp_.last_error();
    // The module "dep" at two versions, as archives every host can read.
    const std::string work = cp_.Path("work");
    CmdResult gen = agents_[0]->Ctl({"generate", "dep", "--lang", "python", "--dir",
                                     work + "/gen/package"});
    ASSERT_EQ(gen.exit_code, 0) << gen.err;
    for (const char* v : {"1.0.0", "2.0.0"}) {
      std::string manifest = ReadFile(work + "/gen/package/package.json");
      const size_t at = manifest.find("\"version\"");
      ASSERT_NE(at, std::string::npos) << manifest;
      const size_t q1 = manifest.find('"', manifest.find(':', at) + 1);
      const size_t q2 = manifest.find('"', q1 + 1);
      manifest.replace(q1 + 1, q2 - q1 - 1, v);
      WriteTextFile(work + "/gen/package/package.json", manifest);
      tgz_[v] = absl::StrCat(work, "/dep-", v, ".tgz");
      ASSERT_EQ(herd::testing::Run({Which("tar"), "-czf", tgz_[v], "-C", work + "/gen", "package"}).exit_code, 0);
    }
  }

  // The version of "dep" installed on host i ("" when it is not).
  std::string Version(int i) {
    json d = agents_[i]->CtlJson({"describe", "dep"});
    if (!d.is_object() || !d.contains("module_info")) return "";
    return d["module_info"].value("version", "");
  }
  bool AllAre(const std::vector<std::string>& want) {
    for (int i = 0; i < kAgents; ++i) {
      if (Version(i) != want[i]) return false;
    }
    return true;
  }
  std::string Versions() {
    std::string s;
    for (int i = 0; i < kAgents; ++i) absl::StrAppend(&s, " host", i, "=", Version(i));
    return s;
  }
  CmdResult Cp(const std::vector<std::string>& args) {
    return cp_.Ctl(args, cp_.OperatorTokenFile());
  }
  json Deployment(const std::string& scope_key, const json& scope_value) {
    json all = cp_.CtlJson({"deployments", "dep"});
    if (!all.is_object()) return nullptr;
    for (const auto& d : all.value("deployments", json::array())) {
      if (d["scope"].contains(scope_key) && d["scope"][scope_key] == scope_value) return d;
    }
    return nullptr;
  }

  ControlPlaneHarness cp_;
  std::unique_ptr<AgentHarness> agents_[kAgents];
  std::string host_ids_[kAgents];
  std::map<std::string, std::string> tgz_;
};

TEST_F(DeployTest, DeclaredModulesReachExactlyTheirHostsAndFollowTheDeclarations) {
  // A module installed by hand on host 0: never touched by deployments.
  const std::string hand = agents_[0]->Path("src/handmade");
  ASSERT_EQ(agents_[0]->Ctl({"generate", "handmade", "--lang", "python", "--dir", hand}).exit_code, 0);
  ASSERT_EQ(agents_[0]->Ctl({"install", hand}).exit_code, 0);

  // 1. Only the hosts of the selector install it.
  // (The archive exists here: agentctl uploads it, and the host fetches it.)
  CmdResult d1 = Cp({"deploy", tgz_["1.0.0"], "--name", "dep", "--version", "1.0.0",
                     "--selector", "role=db"});
  ASSERT_EQ(d1.exit_code, 0) << d1.err;
  EXPECT_THAT(d1.err, HasSubstr("uploaded dep 1.0.0"));
  EXPECT_THAT(d1.out, HasSubstr("1 host(s) told: " + host_ids_[1]));
  ASSERT_TRUE(WaitFor([&] { return AllAre({"", "1.0.0", ""}); }, absl::Seconds(30))) << Versions();
  ASSERT_TRUE(WaitFor([&] {
    json d = Deployment("selector", "role=db");
    return d.is_object() && d["hosts"].size() == 1 && d["hosts"][0].value("state", "") == "converged";
  })) << cp_.Ctl({"deployments"}).out;
  json d = Deployment("selector", "role=db");
  EXPECT_EQ(d["hosts"][0]["host_id"], host_ids_[1]);
  EXPECT_EQ(d["hosts"][0]["actual_version"], "1.0.0");

  // 2. A new version at the same scope: the host moves to it.
  ASSERT_EQ(Cp({"deploy", tgz_["2.0.0"], "--name", "dep", "--version", "2.0.0", "--selector",
                "role=db"}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return AllAre({"", "2.0.0", ""}); }, absl::Seconds(30))) << Versions();

  // 3. Globally at 1.0.0 while host 2 is away: host 0 installs it, host 1 keeps the
  // selector's 2.0.0 (the higher scope), host 2 converges when it returns.
  agents_[2]->StopAgent();
  // (A path on the hosts this time: agentctl does not upload it.)
  CmdResult g = Cp({"deploy", tgz_["1.0.0"], "--host-path", "--name", "dep", "--version",
                    "1.0.0", "--global"});
  ASSERT_EQ(g.exit_code, 0) << g.err;
  EXPECT_THAT(g.err, ::testing::Not(HasSubstr("uploaded")));
  ASSERT_TRUE(WaitFor([&] { return Version(0) == "1.0.0"; }, absl::Seconds(30))) << Versions();
  EXPECT_EQ(Version(1), "2.0.0");
  json global = Deployment("global", true);
  ASSERT_TRUE(global.is_object()) << cp_.Ctl({"deployments"}).out;
  // Host 2 is under it, shown offline, not yet converged.
  bool offline_shown = false;
  for (const auto& h : global["hosts"]) {
    if (h["host_id"] == host_ids_[2]) offline_shown = !h.value("online", true);
  }
  EXPECT_TRUE(offline_shown) << global.dump();
  ASSERT_TRUE(agents_[2]->StartAgent(cp_.AgentArgs(kLabels[2]))) << agents_[2]->last_error();
  ASSERT_TRUE(WaitFor([&] { return AllAre({"1.0.0", "2.0.0", "1.0.0"}); }, absl::Seconds(30)))
      << Versions();
  CmdResult table = cp_.Ctl({"deployments"});
  EXPECT_THAT(table.out, HasSubstr("selector role=db"));
  EXPECT_THAT(table.out, HasSubstr("global"));

  // 4. Undeployed at the selector: host 1 falls back to the global declaration (1.0.0).
  ASSERT_EQ(Cp({"undeploy", "dep", "--selector", "role=db"}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return AllAre({"1.0.0", "1.0.0", "1.0.0"}); }, absl::Seconds(30)))
      << Versions();

  // 5. Undeployed everywhere: removed from every host; the hand-installed module stays.
  ASSERT_EQ(Cp({"undeploy", "dep", "--global"}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return AllAre({"", "", ""}); }, absl::Seconds(30))) << Versions();
  EXPECT_FALSE(agents_[0]->Unit("handmade").is_null());
  EXPECT_THAT(agents_[0]->Ctl({"list"}).out, HasSubstr("handmade"));
  // Audited, with who did it.
  CmdResult audit = cp_.Ctl({"audit"});
  EXPECT_THAT(audit.out, HasSubstr("module.deploy"));
  EXPECT_THAT(audit.out, HasSubstr("module.undeploy"));
}

TEST_F(DeployTest, WhatCannotConvergeIsShownWithItsReasonAndBadRequestsAreRefused) {
  ASSERT_EQ(Cp({"deploy", "/nonexistent/dep.tgz", "--name", "dep", "--host", host_ids_[0]})
                .exit_code, 0);
  json host;
  ASSERT_TRUE(WaitFor([&] {
    json d = Deployment("host_id", host_ids_[0]);
    if (!d.is_object() || d["hosts"].empty()) return false;
    host = d["hosts"][0];
    return host.value("state", "") == "failed";
  }, absl::Seconds(30))) << cp_.Ctl({"deployments"}).out;
  EXPECT_THAT(host.value("error", ""), HasSubstr("/nonexistent/dep.tgz"));
  CmdResult table = cp_.Ctl({"deployments"});
  EXPECT_THAT(table.out, HasSubstr("not converged"));
  EXPECT_THAT(table.out, HasSubstr("failed"));
  // The other hosts are untouched.
  EXPECT_EQ(Version(1), "");

  // Refusals say what is wrong.
  CmdResult no_name = Cp({"deploy", "/x/y.tgz", "--global"});
  EXPECT_NE(no_name.exit_code, 0);
  EXPECT_THAT(no_name.err, HasSubstr("--name"));
  CmdResult bad = Cp({"deploy", "Not A Spec", "--global"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.err, HasSubstr("neither an npm spec"));
  CmdResult no_scope = Cp({"deploy", "pm2-server-monit@3.0.0"});
  EXPECT_NE(no_scope.exit_code, 0);
  EXPECT_THAT(no_scope.err, HasSubstr("choose one scope"));
  CmdResult gone = Cp({"undeploy", "dep", "--global"});
  EXPECT_NE(gone.exit_code, 0);
  EXPECT_THAT(gone.err, HasSubstr("it is deployed at: host:" + host_ids_[0]));
  // A viewer may read, not deploy.
  CmdResult viewer = cp_.Ctl({"deploy", "pm2-server-monit@3.0.0", "--global"},
                             cp_.ViewerTokenFile());
  EXPECT_NE(viewer.exit_code, 0);
  EXPECT_THAT(cp_.Ctl({"deployments"}, cp_.ViewerTokenFile()).exit_code, 0);
}

// A change of version runs as a rollout: batch by batch, each host through its health gate.
// A version that crashes fails the gate on the first host, which goes back to the previous
// version; the hosts not reached never move, and the declaration keeps its version.
TEST_F(DeployTest, AVersionChangeRollsOutAndABrokenVersionIsRolledBack) {
  // 3.0.0 crashes as soon as it starts.
  const std::string work = cp_.Path("work");
  WriteTextFile(work + "/gen/package/main.py", "import sys\nsys.exit(3)\n");
  std::string manifest = ReadFile(work + "/gen/package/package.json");
  manifest.replace(manifest.find("2.0.0"), 5, "3.0.0");
  WriteTextFile(work + "/gen/package/package.json", manifest);
  const std::string broken = work + "/dep-3.0.0.tgz";
  ASSERT_EQ(herd::testing::Run({Which("tar"), "-czf", broken, "-C", work + "/gen", "package"}).exit_code, 0);

  // A new declaration applies at once.
  CmdResult first = Cp({"deploy", tgz_["1.0.0"], "--global"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_THAT(first.out, HasSubstr("3 host(s) told"));
  ASSERT_TRUE(WaitFor([&] { return AllAre({"1.0.0", "1.0.0", "1.0.0"}); }, absl::Seconds(30)))
      << Versions();

  // 2.0.0 rolls out one host at a time; agentctl follows it to the end.
  CmdResult up = Cp({"deploy", tgz_["2.0.0"], "--global", "--batch", "1", "--wait-healthy", "1s"});
  ASSERT_EQ(up.exit_code, 0) << up.out << up.err;
  EXPECT_THAT(up.err, HasSubstr("1.0.0 -> 2.0.0 on 3 host(s)"));
  EXPECT_THAT(up.out, HasSubstr("3/3 done"));
  EXPECT_TRUE(AllAre({"2.0.0", "2.0.0", "2.0.0"})) << Versions();
  json global = Deployment("global", true);
  ASSERT_TRUE(global.is_object());
  EXPECT_EQ(global["version"], "2.0.0") << "the declaration took the new version";
  json rollouts = cp_.CtlJson({"rollouts"});
  ASSERT_TRUE(rollouts.is_object() && !rollouts["rollouts"].empty()) << rollouts.dump();
  const json& done = rollouts["rollouts"][0];
  EXPECT_EQ(done["state"], "succeeded");
  EXPECT_EQ(done["deploy"]["to_version"], "2.0.0");
  EXPECT_EQ(done["batches"], 3);

  // 3.0.0 crashes: the first host fails its gate and is moved back; the rollout stops.
  CmdResult bad = Cp({"deploy", broken, "--global", "--batch", "1", "--wait-healthy", "2s",
                      "--host-timeout", "60s"});
  EXPECT_NE(bad.exit_code, 0) << bad.out;
  EXPECT_THAT(bad.out, HasSubstr("rolled back to 2.0.0"));
  EXPECT_THAT(bad.out, HasSubstr("restarted within its health gate"));
  ASSERT_TRUE(WaitFor([&] { return AllAre({"2.0.0", "2.0.0", "2.0.0"}); }, absl::Seconds(30)))
      << Versions();
  global = Deployment("global", true);
  EXPECT_EQ(global["version"], "2.0.0") << "a failed rollout leaves the declaration as it was";
  CmdResult audit = cp_.Ctl({"audit", "--limit", "50"});
  EXPECT_THAT(audit.out, HasSubstr("rollout.deploy.batch"));
  EXPECT_THAT(audit.out, HasSubstr("module.rollback"));

  // While a host is away, a rollout moves the others; it converges when it returns.
  agents_[2]->StopAgent();
  CmdResult down = Cp({"deploy", tgz_["1.0.0"], "--global", "--batch", "50%", "--wait-healthy",
                       "1s"});
  ASSERT_EQ(down.exit_code, 0) << down.out << down.err;
  EXPECT_THAT(down.err, HasSubstr("on 2 host(s)"));
  EXPECT_EQ(Version(0), "1.0.0");
  EXPECT_EQ(Version(1), "1.0.0");
  ASSERT_TRUE(agents_[2]->StartAgent(cp_.AgentArgs(kLabels[2]))) << agents_[2]->last_error();
  ASSERT_TRUE(WaitFor([&] { return AllAre({"1.0.0", "1.0.0", "1.0.0"}); }, absl::Seconds(30)))
      << Versions();
}

// An archive or a directory here is uploaded once, kept by its digest, fetched by the hosts
// whose config wants it (and refused to the others), checked before it is unpacked.
TEST_F(DeployTest, AnUploadedArtifactIsFetchedOnlyByTheHostsThatWantIt) {
  // A directory (packed with npm pack; its package.json says 2.0.0 after SetUp).
  CmdResult d = Cp({"deploy", cp_.Path("work/gen/package"), "--selector", "env=dev"});
  ASSERT_EQ(d.exit_code, 0) << d.err;
  EXPECT_THAT(d.err, HasSubstr("uploaded dep 2.0.0"));
  ASSERT_TRUE(WaitFor([&] { return AllAre({"", "", "2.0.0"}); }, absl::Seconds(30))) << Versions();
  json listed = cp_.CtlJson({"artifacts"});
  ASSERT_TRUE(listed.is_object() && listed["artifacts"].size() == 1) << listed.dump();
  const json a = listed["artifacts"][0];
  EXPECT_EQ(a["name"], "dep");
  EXPECT_EQ(a["version"], "2.0.0");
  const std::string digest = a["sha256"];
  json dep = Deployment("selector", "env=dev");
  ASSERT_TRUE(dep.is_object());
  EXPECT_EQ(dep["source"], "sha256:" + digest);
  // The host keeps what it installed, under its digest.
  EXPECT_TRUE(fs::exists(agents_[2]->Path("artifacts/" + digest + ".tgz")));
  EXPECT_FALSE(fs::exists(agents_[0]->Path("artifacts/" + digest + ".tgz")));

  // The same bytes again are the same artifact.
  ASSERT_EQ(herd::testing::Run({Which("npm"), "pack", "--silent", "--pack-destination", cp_.Path("work"),
                 cp_.Path("work/gen/package")}).exit_code, 0);
  CmdResult again = Cp({"deploy", cp_.Path("work/dep-2.0.0.tgz"), "--selector", "env=dev"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.err, HasSubstr("already had dep 2.0.0"));
  EXPECT_THAT(again.out, HasSubstr("already deployed"));

  // Fetching it takes the host's credential, and the host's config must want it.
  auto channel = grpc::CreateChannel(cp_.address(), grpc::InsecureChannelCredentials());
  auto stub = herd::v1::Gateway::NewStub(channel);
  auto fetch = [&](int host, const std::string& credential, std::string* bytes) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + credential);
    herd::v1::FetchArtifactRequest req;
    req.set_host_id(host_ids_[host]);
    req.set_sha256(digest);
    auto reader = stub->FetchArtifact(&ctx, req);
    herd::v1::ArtifactChunk chunk;
    while (reader->Read(&chunk)) bytes->append(chunk.data());
    return reader->Finish();
  };
  std::string bytes;
  grpc::Status ok = fetch(2, ReadTrimmed(agents_[2]->Path("host-credential")), &bytes);
  ASSERT_TRUE(ok.ok()) << ok.error_message();
  EXPECT_EQ(Sha256Of(bytes), digest);
  bytes.clear();
  grpc::Status other = fetch(0, ReadTrimmed(agents_[0]->Path("host-credential")), &bytes);
  EXPECT_EQ(other.error_code(), grpc::StatusCode::PERMISSION_DENIED) << other.error_message();
  EXPECT_TRUE(bytes.empty());
  grpc::Status wrong = fetch(2, ReadTrimmed(cp_.JoinTokenFile()), &bytes);
  EXPECT_EQ(wrong.error_code(), grpc::StatusCode::UNAUTHENTICATED) << wrong.error_message();

  // What is not a module is refused at upload, saying why.
  const std::string junk = cp_.Path("work/junk.tgz");
  WriteTextFile(junk, std::string(3000, 'j'));
  CmdResult bad = Cp({"deploy", junk, "--global"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.err, HasSubstr("not a module archive"));
  // A viewer may list artifacts, not upload them.
  EXPECT_EQ(cp_.Ctl({"artifacts"}, cp_.ViewerTokenFile()).exit_code, 0);
  CmdResult viewer = cp_.Ctl({"deploy", tgz_["1.0.0"], "--global"}, cp_.ViewerTokenFile());
  EXPECT_NE(viewer.exit_code, 0);
}

}  // namespace
}  // namespace herd::testing
