#include "controlplane/store/store_location.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/atomic_file.h"
#include "common/status_macros.h"

namespace herd::controlplane {
namespace {

absl::Status MakeDataDir(const std::string& dir) {
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::PermissionDeniedError(absl::StrCat("cannot create ", dir, ": ", strerror(errno),
                                                    "; choose a writable --data directory"));
  }
  struct stat st {};
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(dir, " is not a directory"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<etcd::Options> EtcdClientOptions(const StoreLocation& location) {
  absl::StatusOr<etcd::Options> o = etcd::ParseEtcdUrl(location.url);
  if (!o.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--store: ", o.status().message()));
  }
  o->ca_file = location.etcd_ca;
  o->cert_file = location.etcd_cert;
  o->key_file = location.etcd_key;
  if (o->cert_file.empty() != o->key_file.empty()) {
    return absl::InvalidArgumentError("--etcd-cert and --etcd-key go together");
  }
  if (location.etcd_user.empty() != location.etcd_password_file.empty()) {
    return absl::InvalidArgumentError("--etcd-user and --etcd-password-file go together");
  }
  if (!location.etcd_user.empty()) {
    absl::StatusOr<std::string> password = ReadFileToString(location.etcd_password_file);
    if (!password.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--etcd-password-file ",
                                                     location.etcd_password_file, ": ",
                                                     password.status().message()));
    }
    o->user = location.etcd_user;
    o->password = std::string(absl::StripAsciiWhitespace(*password));
  }
  return o;
}

absl::StatusOr<OpenedStore> OpenStoreAt(const StoreLocation& location) {
  OpenedStore out;
  // Made on etcd too: the token and address files live there.
  if (!location.data_dir.empty()) HERD_RETURN_IF_ERROR(MakeDataDir(location.data_dir));
  if (!location.on_etcd()) {
    const std::string path = absl::StrCat(location.data_dir, "/herd.db");
    HERD_ASSIGN_OR_RETURN(out.store, OpenSqliteStore(path));
    out.description = absl::StrCat("sqlite ", path);
    return out;
  }
  HERD_ASSIGN_OR_RETURN(etcd::Options options, EtcdClientOptions(location));
  HERD_ASSIGN_OR_RETURN(out.etcd_client, etcd::Client::Connect(options));
  HERD_ASSIGN_OR_RETURN(out.store,
                        OpenEtcdStore(*out.etcd_client, location.etcd_prefix, location.etcd));
  out.description = absl::StrCat("etcd ", out.etcd_client->EndpointsText(), " prefix ",
                                 location.etcd_prefix);
  return out;
}

}  // namespace herd::controlplane
