#include "agent/daemon/local_api.h"

#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"

namespace herd::agent {

LocalApi::LocalApi(std::string socket_path) : socket_path_(std::move(socket_path)) {}

LocalApi::~LocalApi() { Close(); }

absl::Status LocalApi::Start(grpc::Service& service) {
  unlink(socket_path_.c_str());  // we hold the home lock: any socket file here is stale
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat("unix:", socket_path_), grpc::InsecureServerCredentials());
  builder.RegisterService(&service);
  builder.SetMaxReceiveMessageSize(4 << 20);
  server_ = builder.BuildAndStart();
  if (!server_) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", socket_path_,
                                               ": check that the directory is writable"));
  }
  chmod(socket_path_.c_str(), 0660);
  return absl::OkStatus();
}

void LocalApi::ShutdownThen(absl::Duration grace, std::function<void()> then) {
  stopper_ = std::thread([this, grace, then = std::move(then)] {
    if (server_) server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
    then();
  });
}

void LocalApi::Close() {
  if (stopper_.joinable()) stopper_.join();
  if (!server_) return;
  server_.reset();
  unlink(socket_path_.c_str());
}

}  // namespace herd::agent
