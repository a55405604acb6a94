// The dashboard's files (web/src plus the charting library from npm), built into the
// binary (web/CMakeLists.txt, cmake/EmbedFiles.cmake): the control plane is one file.
#pragma once

#include <span>
#include <string_view>

namespace herd::controlplane {

struct WebAsset {
  std::string_view name;  // file name: "index.html", "app.js", "uPlot.iife.min.js"
  std::string_view content_type;
  std::string_view body;
};

std::span<const WebAsset> WebAssets();

}  // namespace herd::controlplane
