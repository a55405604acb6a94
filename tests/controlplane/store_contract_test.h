// The Store contract suite's fixture. A backend joins the suite with one line:
//
//   INSTANTIATE_TEST_SUITE_P(Etcd, StoreContractTest,
//                            ::testing::Values(StoreBackend{"etcd", &OpenEtcdForTest}),
//                            StoreBackendName);
//
// `open(dir)` must open the store kept in `dir` (a fresh empty directory per test), and
// opening the same `dir` again must reopen the same data: that is how durability is tested.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controlplane/store/store.h"
#include "tests/fakes/temp_dir.h"

namespace herd::controlplane::testing {

struct StoreBackend {
  std::string name;
  std::function<absl::StatusOr<std::unique_ptr<Store>>(const std::string& dir)> open;
};

inline std::string StoreBackendName(const ::testing::TestParamInfo<StoreBackend>& info) {
  return info.param.name;
}

#define HERD_ASSERT_OK(expr)                          \
  do {                                                \
    const absl::Status _herd_st = (expr);             \
    ASSERT_TRUE(_herd_st.ok()) << #expr << ": " << _herd_st; \
  } while (0)
#define HERD_EXPECT_OK(expr)                          \
  do {                                                \
    const absl::Status _herd_st = (expr);             \
    EXPECT_TRUE(_herd_st.ok()) << #expr << ": " << _herd_st; \
  } while (0)

// Unwraps a StatusOr, failing the test (and throwing out of it) when it holds an error.
template <typename T>
T Must(absl::StatusOr<T> v, const char* what = "") {
  if (!v.ok()) {
    ADD_FAILURE() << what << ": " << v.status();
    throw std::runtime_error(std::string(v.status().message()));
  }
  return std::move(v).value();
}

// A fresh temporary directory, removed with everything in it.
class TempDir : public ::herd::testing::ScopedTempDir {
 public:
  TempDir() : ScopedTempDir("herd-store") {}
};

class StoreContractTest : public ::testing::TestWithParam<StoreBackend> {
 protected:
  void SetUp() override { Open(); }

  // Fails the test (by throwing) when the store cannot be opened.
  void Open() { store_ = Must(GetParam().open(dir_.path()), "opening the store"); }
  // Closes the store and opens it again from the same directory.
  void Reopen() {
    store_.reset();
    Open();
  }
  Store& store() { return *store_; }

  TempDir dir_;
  std::unique_ptr<Store> store_;
};

}  // namespace herd::controlplane::testing
