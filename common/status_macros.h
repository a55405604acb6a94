// Early returns for absl::Status / absl::StatusOr<T>, so that a function made of fallible
// steps reads as the steps and not as their error plumbing (the same two macros Abseil uses
// internally and Envoy spells RETURN_IF_NOT_OK).
//
//   HERD_RETURN_IF_ERROR(expr);
//     `expr` is an absl::Status (or anything convertible to one): when it is not OK, the
//     enclosing function returns it. The function must return absl::Status or
//     absl::StatusOr<T>.
//
//   HERD_ASSIGN_OR_RETURN(lhs, expr);
//     `expr` is an absl::StatusOr<T>: when it holds an error, the enclosing function returns
//     that status; otherwise its value is moved into `lhs`, which may declare a variable
//     (`HERD_ASSIGN_OR_RETURN(int64_t n, ReadCount());`). It expands to more than one
//     statement: do not use it as the body of an unbraced if/else, and use it at most once
//     per line (the temporary is named after __LINE__).
//
// The status is passed on unchanged: messages say what was wrong where they are made.
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define HERD_RETURN_IF_ERROR(expr)                                \
  do {                                                            \
    if (absl::Status herd_status_ = (expr); !herd_status_.ok()) { \
      return herd_status_;                                        \
    }                                                             \
  } while (0)

#define HERD_STATUS_MACROS_CONCAT_INNER_(a, b) a##b
#define HERD_STATUS_MACROS_CONCAT_(a, b) HERD_STATUS_MACROS_CONCAT_INNER_(a, b)

#define HERD_ASSIGN_OR_RETURN(lhs, expr) \
  HERD_ASSIGN_OR_RETURN_IMPL_(HERD_STATUS_MACROS_CONCAT_(herd_statusor_, __LINE__), lhs, expr)

#define HERD_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) {                                  \
    return std::move(tmp).status();                 \
  }                                                 \
  lhs = std::move(tmp).value()
