// Checkpoints: a model's state dict in an HDF5 file, one dataset per key.
//
//   nn::save_checkpoint(model, "runs/best.h5");      // atomic: the old file survives a crash
//   ...
//   nn::load_checkpoint(model, "runs/best.h5");      // in place; strict by default
//
//   nn::StateDict state = nn::load_state("runs/best.h5");   // the tensors, without a module
//
// The file is plain HDF5, readable without zkynet:
//
//   import h5py
//   with h5py.File("runs/best.h5") as f:
//       w = f["l1.weight"][()]        # numpy float64 array, shape (out, in)
//
// Layout: each key of the state dict (dotted names such as "l1.weight") is a dataset of the
// same name at the file's root, in state-dict order (link creation order is tracked). Values
// keep their dtype (float32 -> IEEE f32, float64 -> IEEE f64, int64 -> 64-bit signed integer,
// little-endian) and their shape as the dataset's shape; a 0-d tensor is a scalar dataset.
// A model with stateful recurrent layers also gets a group "recurrent_states" holding
// nn::states(model), one dataset per key ("encoder.lstm.h"); a layer that carries no state yet
// is an empty dataset (null dataspace: h5py.Empty). Files without the group (older ones, or
// models without stateful layers) hold the state dict only.
// The file uses the HDF5 1.10 format (readable by HDF5 >= 1.10, so by any current h5py), whose
// metadata is checksummed, and the values carry Fletcher-32 checksums (datasets of rank >= 1
// are stored as one checksummed chunk, up to 1 GiB per chunk): a damaged file is an error, not
// a crash or a silently different model.
//
// Writes are atomic: the file is written under a temporary name in the target's directory,
// flushed to disk (fsync) and renamed over the target, so a crash or an error mid-save leaves
// the previous checkpoint intact and no temporary file behind (except after a hard crash of
// the process itself: then a "<name>.tmp.*" file may remain next to the target).
//
// Errors are zkynet exceptions naming the file and, where one is at fault, the key:
// UsageError for a missing, truncated, corrupted or non-HDF5 file and for write failures;
// IndexError for missing or unexpected keys (strict); ShapeError for a wrong shape; TypeError
// for a dtype that differs from the module's or that zkynet cannot hold. HDF5's own error
// printing is switched off: its reason is part of the exception's message.
//
// HDF5 (Debian's serial build) is not thread-safe: do not save or load from several threads
// at once.
#pragma once

#include <zkynet/framework/module.h>
#include <zkynet/nn/state.h>

#include <functional>
#include <string>
#include <string_view>

namespace zkynet::nn {

// Writes `state` to `path` atomically (see above). UsageError for a key given twice, an empty
// key or one containing '/' (HDF5's path separator), an undefined tensor, or a failed write.
void save_state(const StateDict& state, const std::string& path);

// Reads every root dataset of `path`, in the order they were written (name order for files
// that do not track creation order, such as h5py's defaults); a checkpoint's
// "recurrent_states" group is not part of it. Integer datasets of other widths become int64
// and float16 becomes float32; other types throw TypeError.
StateDict load_state(const std::string& path);

// save_state(state_dict(module), path), plus nn::states(module) in the "recurrent_states"
// group when the model has stateful recurrent layers.
void save_checkpoint(const ModuleBase& module, const std::string& path);

// Loads `path` into the module's parameters and buffers in place, and the carried states of
// its stateful recurrent layers as load_states does, so the next call continues as the saved
// model's would; a file without the "recurrent_states" group leaves the carried states as
// they are. Unlike load_state_dict, which converts dtypes, a dtype that differs from the
// module's is an error: a checkpoint of another precision is more likely a wrong file than an
// intended conversion (convert with load_state + load_state_dict to mean it). Everything is
// checked before anything is copied, so a failed load leaves the module unchanged. With
// strict = false, missing and unexpected keys are skipped and reported (carried-state keys as
// "recurrent_states/<key>").
LoadStateResult load_checkpoint(ModuleBase& module, const std::string& path, bool strict = true);

namespace detail {
// For tests only: called at each step of a save ("dataset:<key>" after each dataset is
// written, "close" after the file is complete, "rename" just before the rename), so that a
// test can throw there and check that the previous file survives. Empty: no hook.
void set_checkpoint_fault_hook(std::function<void(std::string_view stage)> hook);
// For tests: the HDF5 files, datasets and other objects open in this process (0 once every
// save, load and HDF5Dataset is done, failed or not), to check that no handle leaks.
long open_hdf5_objects();
}  // namespace detail

}  // namespace zkynet::nn
