// Writing stats files so a reader never sees half of one: write a temporary file beside the
// target, then rename(2) over it (what node_exporter's textfile collector asks for).
//
// The rename replaces a directory entry, so it is done only where that is what the user
// meant: a symbolic link is followed (the file it names is replaced, the link stays), and a
// path that is not a regular file — a FIFO, a terminal, /dev/stdout — is written in place,
// once per call, never replaced by a regular file.
#pragma once

#include <string>

#include "engine/core/status.h"

namespace sluice::cli {

Status WriteFileAtomically(const std::string& path, const std::string& contents);

}  // namespace sluice::cli
