// Writing stats files so a reader never sees half of one: write a temporary file beside the
// target, then rename(2) over it (what node_exporter's textfile collector asks for).
#pragma once

#include <string>

#include "engine/core/status.h"

namespace sluice::cli {

Status WriteFileAtomically(const std::string& path, const std::string& contents);

}  // namespace sluice::cli
