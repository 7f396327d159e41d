#include <zkynet/framework/error.h>
#include <zkynet/nn/checkpoint.h>

#include "hdf5_common.h"
#include "states_load.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

namespace zkynet {

namespace {

std::function<void(std::string_view)>& fault_hook() {
  static std::function<void(std::string_view)> hook;
  return hook;
}

void fault_point(std::string_view stage) {
  if (fault_hook()) fault_hook()(stage);
}

// Automatic chunks hold about this many bytes: HDF5 advises 10 KiB to 1 MiB, and small
// chunks keep a random row's read small.
constexpr std::uint64_t kAutoChunkBytes = 64 * 1024;
// HDF5 refuses chunks of 4 GiB or more; larger tensors are split into chunks of at most 1 GiB.
constexpr std::uint64_t kMaxChunkBytes = std::uint64_t{1} << 30;
// See write_file_atomically.
constexpr unsigned kMaxCompactKeys = 8192;

std::string errno_text() { return std::strerror(errno); }

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return "localhost";
  return name;
}

// Whether process `pid` of this host has ended (kill(pid, 0) finds no such process).
bool process_ended(const std::string& pid_text) {
  if (pid_text.empty() || pid_text.size() > 9 || !std::all_of(pid_text.begin(), pid_text.end(), ::isdigit)) return false;
  return ::kill(static_cast<pid_t>(std::stol(pid_text)), 0) != 0 && errno == ESRCH;
}

// A save killed mid-write leaves "<target>.tmp.<host>.<pid>.<n>" behind (or, from older
// versions, "<target>.tmp.<pid>.<n>"): remove those of this host whose process has ended.
// Other hosts' temporaries (a shared filesystem) are left alone: their pids mean nothing here.
void remove_stale_temporaries(const std::string& target) {
  namespace fs = std::filesystem;
  const fs::path target_path(target);
  const std::string prefix = target_path.filename().string() + ".tmp.";
  const fs::path dir = target_path.has_parent_path() ? target_path.parent_path() : fs::path(".");
  const std::string host = host_name();
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string rest = name.substr(prefix.size());  // [<host>.]<pid>.<n>
    const auto last = rest.rfind('.');
    if (last == std::string::npos || last == 0) continue;
    const auto before = rest.rfind('.', last - 1);
    const std::string pid = before == std::string::npos ? rest.substr(0, last) : rest.substr(before + 1, last - before - 1);
    const std::string owner = before == std::string::npos ? host : rest.substr(0, before);
    std::error_code ignored;  // best effort: another save may be removing it too
    if (owner == host && process_ended(pid)) fs::remove(it->path(), ignored);
  }
}

// The temporary file of one save: created exclusively next to the target (a rename is only
// atomic within one filesystem), removed again unless the save commits.
class TempFile {
 public:
  TempFile(const std::string& target, const std::string& where) {
    static std::atomic<unsigned> counter{0};
    remove_stale_temporaries(target);
    const std::string stem = target + ".tmp." + host_name() + "." + std::to_string(::getpid()) + ".";
    for (int attempt = 0;; ++attempt) {
      path_ = stem + std::to_string(counter++);
      // 0666 and the umask give the file the mode any newly created file would get.
      fd_ = ::open(path_.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0666);
      if (fd_ >= 0) return;
      if (errno != EEXIST || attempt > 100) {
        throw UsageError(where + ": cannot create a file next to '" + target + "': " + errno_text());
      }
    }
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(path_.c_str());
  }

  const std::string& path() const { return path_; }
  int fd() const { return fd_; }
  void commit() { committed_ = true; }

 private:
  std::string path_;
  int fd_ = -1;
  bool committed_ = false;
};

// Flushes the directory entry of a rename to disk. Best effort: some filesystems refuse
// fsync on directories, and by now the new file is complete and in place.
void sync_directory(const std::string& file) {
  std::filesystem::path dir = std::filesystem::path(file).parent_path();
  if (dir.empty()) dir = ".";
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

// Undefined tensors are allowed in groups only, where they stand for "no value" (h5::Group).
void check_keys(const std::vector<std::pair<std::string, Tensor>>& tensors, const std::string& where,
                bool undefined_allowed = false) {
  std::set<std::string> seen;
  for (const auto& [key, value] : tensors) {
    if (key.empty()) throw UsageError(where + ": an empty key cannot name a dataset");
    if (key.find('/') != std::string::npos || key == ".") {
      throw UsageError(where + ": key '" + key + "' cannot name a root dataset ('/' separates HDF5 groups)");
    }
    if (!seen.insert(key).second) throw UsageError(where + ": key '" + key + "' appears twice");
    if (!value.defined()) {
      if (undefined_allowed) continue;
      throw UsageError(where + ": '" + key + "' is an undefined tensor");
    }
  }
}

void write_dataset(hid_t file, const std::string& key, const Tensor& value, std::int64_t chunk_rows,
                   const std::string& where, const std::string& path) {
  const auto fail = [&](const std::string& what) {
    throw UsageError(where + ": cannot " + what + " '" + key + "' in '" + path + "': " + h5::last_error());
  };
  // Tensors on any device are saved: a device tensor is read back through the host (cpu()).
  const Tensor data = value.cpu().contiguous();
  std::vector<hsize_t> dims(data.shape().begin(), data.shape().end());
  h5::Handle space(data.dim() == 0 ? H5Screate(H5S_SCALAR)
                                   : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
                   H5Sclose);
  if (!space.valid()) fail("describe the shape of");
  h5::Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  if (!dcpl.valid()) fail("create");
  const auto row_bytes = static_cast<std::uint64_t>(data.dim() == 0 || data.size(0) == 0 ? 0 : data.numel() / data.size(0)) *
                         dtype_size(data.dtype());
  if (data.dim() == 0) {
    // A scalar lives inside its object header, which the file format checksums.
    if (H5Pset_layout(dcpl.get(), H5D_COMPACT) < 0) fail("create");
  } else if (data.numel() > 0 && row_bytes <= kMaxChunkBytes) {
    // Chunked, so that the Fletcher-32 filter can checksum the values: a flipped bit in a
    // checkpoint is a read error, not a silently different model. Chunks are whole rows, so
    // that a reader of a few rows (HDF5Dataset) touches only their chunks.
    std::uint64_t rows = static_cast<std::uint64_t>(data.size(0));
    if (chunk_rows > 0) rows = static_cast<std::uint64_t>(chunk_rows);
    if (chunk_rows < 0) rows = std::max<std::uint64_t>(1, kAutoChunkBytes / row_bytes);
    rows = std::min({rows, static_cast<std::uint64_t>(data.size(0)), std::max<std::uint64_t>(1, kMaxChunkBytes / row_bytes)});
    std::vector<hsize_t> chunk = dims;
    chunk[0] = static_cast<hsize_t>(rows);
    if (H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data()) < 0 || H5Pset_fletcher32(dcpl.get()) < 0) {
      fail("chunk");
    }
  }
  // Otherwise (no elements, or rows beyond HDF5's 4 GiB chunk limit) the layout is contiguous.
  h5::Handle dataset(H5Dcreate2(file, key.c_str(), h5::file_type(data.dtype()), space.get(), H5P_DEFAULT, dcpl.get(),
                                H5P_DEFAULT),
                     H5Dclose);
  if (!dataset.valid()) fail("create");
  // Zero elements: nothing to write (and an empty tensor may have no buffer at all).
  if (data.numel() > 0 &&
      H5Dwrite(dataset.get(), h5::memory_type(data.dtype()), H5S_ALL, H5S_ALL, H5P_DEFAULT, data.raw_data()) < 0) {
    fail("write");
  }
  if (!dataset.close()) fail("write");
}

// An undefined tensor: a dataset with a null dataspace, its header checksummed like any other.
void write_empty_dataset(hid_t location, const std::string& key, const std::string& where, const std::string& path) {
  h5::Handle space(H5Screate(H5S_NULL), H5Sclose);
  h5::Handle dataset(space.valid() ? H5Dcreate2(location, key.c_str(), H5T_IEEE_F64LE, space.get(), H5P_DEFAULT,
                                                H5P_DEFAULT, H5P_DEFAULT)
                                   : H5I_INVALID_HID,
                     H5Dclose);
  if (!dataset.valid() || !dataset.close()) {
    throw UsageError(where + ": cannot create '" + key + "' in '" + path + "': " + h5::last_error());
  }
}

// Creates a group that tracks its links' creation order, so that its datasets read back in order.
h5::Handle create_group(hid_t file, const std::string& name, const std::string& where, const std::string& path) {
  h5::Handle gcpl(H5Pcreate(H5P_GROUP_CREATE), H5Pclose);
  if (!gcpl.valid() || H5Pset_link_creation_order(gcpl.get(), H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED) < 0) {
    throw UsageError(where + ": cannot prepare group '" + name + "' in '" + path + "': " + h5::last_error());
  }
  h5::Handle group(H5Gcreate2(file, name.c_str(), H5P_DEFAULT, gcpl.get(), H5P_DEFAULT), H5Gclose);
  if (!group.valid()) throw UsageError(where + ": cannot create group '" + name + "' in '" + path + "': " + h5::last_error());
  return group;
}

void write_group(hid_t file, const h5::Group& group, std::int64_t chunk_rows, const std::string& where,
                 const std::string& path) {
  const h5::Handle handle = create_group(file, group.name, where, path);
  for (const auto& [key, value] : group.tensors) {
    if (value.defined()) {
      write_dataset(handle.get(), key, value, chunk_rows, where, path);
    } else {
      write_empty_dataset(handle.get(), key, where, path);
    }
    fault_point("dataset:" + group.name + "/" + key);
  }
}

}  // namespace

namespace h5 {

void write_file_atomically(const std::vector<std::pair<std::string, Tensor>>& tensors, const std::string& path,
                           std::int64_t chunk_rows, const std::string& where, const std::vector<Group>& groups) {
  silence_errors();
  check_keys(tensors, where);
  for (const Group& group : groups) {
    check_keys(group.tensors, where + " (group '" + group.name + "')", /*undefined_allowed=*/true);
    for (const auto& entry : tensors) {
      if (entry.first == group.name) {
        throw UsageError(where + ": key '" + entry.first + "' would take the name of the group '" + group.name + "'");
      }
    }
  }
  TempFile temp(path, where);
  {
    // Tracked creation order lets load_state return the keys in state-dict order.
    // The root group's links live in its object header ("compact" storage), sized up front
    // for these keys: HDF5 1.10 silently drops the links of a damaged header continuation
    // block, and dense storage keeps names in an unchecksummed heap, so a single checksummed
    // header makes a damaged key list an error rather than a shorter one. Compact lookups are
    // linear, so beyond kMaxCompactKeys keys (rare: large models have a few thousand) the
    // group goes dense to keep saving and loading fast.
    const auto keys = static_cast<unsigned>(std::min<std::size_t>(tensors.size(), kMaxCompactKeys));
    std::size_t name_bytes = 0;
    for (const auto& entry : tensors) name_bytes += entry.first.size();
    const auto mean_name = static_cast<unsigned>(std::min<std::size_t>(keys ? name_bytes / keys + 1 : 1, 65535));
    Handle fcpl(H5Pcreate(H5P_FILE_CREATE), H5Pclose);
    if (!fcpl.valid() || H5Pset_link_creation_order(fcpl.get(), H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED) < 0 ||
        H5Pset_link_phase_change(fcpl.get(), std::max(keys, 8u), 6) < 0 ||
        H5Pset_est_link_info(fcpl.get(), keys, mean_name) < 0) {
      throw UsageError(where + ": cannot prepare '" + path + "': " + last_error());
    }
    // The HDF5 1.10 file format checksums all metadata (superblock, object headers, indexes):
    // a damaged file fails those checks instead of steering the reader to wild addresses (the
    // 1.8 format's unchecksummed link B-trees can crash HDF5 1.10 when corrupted).
    Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
    if (!fapl.valid() || H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V110, H5F_LIBVER_V110) < 0) {
      throw UsageError(where + ": cannot prepare '" + path + "': " + last_error());
    }
    // The temporary file exists (empty, created exclusively); HDF5 truncates and fills it.
    Handle file(H5Fcreate(temp.path().c_str(), H5F_ACC_TRUNC, fcpl.get(), fapl.get()), H5Fclose);
    if (!file.valid()) throw UsageError(where + ": cannot write '" + temp.path() + "': " + last_error());
    for (const auto& [key, value] : tensors) {
      write_dataset(file.get(), key, value, chunk_rows, where, path);
      fault_point("dataset:" + key);
    }
    for (const Group& group : groups) write_group(file.get(), group, chunk_rows, where, path);
    if (!file.close()) throw UsageError(where + ": cannot finish writing '" + path + "': " + last_error());
  }
  fault_point("close");
  if (::fsync(temp.fd()) != 0) throw UsageError(where + ": cannot flush '" + temp.path() + "' to disk: " + errno_text());
  fault_point("rename");
  if (std::rename(temp.path().c_str(), path.c_str()) != 0) {
    throw UsageError(where + ": cannot replace '" + path + "': " + errno_text());
  }
  temp.commit();
  sync_directory(path);
}

}  // namespace h5

namespace nn {

namespace detail {
void set_checkpoint_fault_hook(std::function<void(std::string_view stage)> hook) { fault_hook() = std::move(hook); }
long open_hdf5_objects() { return static_cast<long>(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL)); }
}  // namespace detail

void save_state(const StateDict& state, const std::string& path) {
  h5::write_file_atomically(state, path, /*chunk_rows=*/0, "save_state");
}

namespace {

// The group of a checkpoint that holds nn::states(module), one dataset per key.
constexpr const char* kStatesGroup = "recurrent_states";

// The links of a group: in creation order where the writer tracked it (zkynet does), else in
// name order. One pass over the links: looking names up by index costs a sort of the links
// per call in HDF5 1.10.
std::vector<std::string> link_names(hid_t group, const std::string& where, const std::string& path) {
  std::vector<std::string> names;
  const H5L_iterate_t collect = [](hid_t, const char* name, const H5L_info_t*, void* data) -> herr_t {
    try {  // no exception may cross HDF5's C frames
      static_cast<std::vector<std::string>*>(data)->emplace_back(name);
      return 0;
    } catch (...) {
      return -1;
    }
  };
  if (H5Literate(group, H5_INDEX_CRT_ORDER, H5_ITER_INC, nullptr, collect, &names) < 0) {
    H5Eclear2(H5E_DEFAULT);
    names.clear();
    if (H5Literate(group, H5_INDEX_NAME, H5_ITER_INC, nullptr, collect, &names) < 0) {
      throw UsageError(where + ": cannot list the datasets of '" + path + "': " + h5::last_error());
    }
  }
  return names;
}

bool is_null_dataset(hid_t dataset) {
  h5::Handle space(H5Dget_space(dataset), H5Sclose);
  return space.valid() && H5Sget_simple_extent_type(space.get()) == H5S_NULL;
}

// The datasets of `group`, skipping the links named in `skip`; `undefined_allowed`: a dataset
// with a null dataspace reads as an undefined tensor (h5::Group), else it is an error.
StateDict read_datasets(hid_t group, const std::string& group_label, const std::set<std::string>& skip,
                        bool undefined_allowed, const std::string& where, const std::string& path) {
  StateDict out;
  for (std::string& name : link_names(group, where, path)) {
    if (skip.contains(name)) continue;
    const std::string shown = group_label + name;
    h5::Handle object(H5Oopen(group, name.c_str(), H5P_DEFAULT), H5Oclose);
    if (!object.valid()) {
      throw UsageError(where + ": cannot open '" + shown + "' in '" + path + "': " + h5::last_error());
    }
    if (H5Iget_type(object.get()) != H5I_DATASET) {
      throw UsageError(where + ": '" + shown + "' in '" + path + "' is not a dataset (a group?); a checkpoint holds "
                       "one dataset per key at the root");
    }
    if (undefined_allowed && is_null_dataset(object.get())) {
      out.emplace_back(std::move(name), Tensor());
      continue;
    }
    const h5::DatasetInfo ds = h5::dataset_info(object.get(), shown, path, where);
    Tensor value = Tensor::empty(ds.shape, ds.dtype);
    if (value.numel() > 0 && H5Dread(object.get(), h5::memory_type(ds.dtype), H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                     value.raw_data()) < 0) {
      throw UsageError(where + ": cannot read '" + shown + "' from '" + path + "': " + h5::last_error());
    }
    out.emplace_back(std::move(name), std::move(value));
  }
  return out;
}

// Whether the file's root holds the states group (a group, not a dataset of that name).
bool has_states_group(hid_t file) {
  if (H5Lexists(file, kStatesGroup, H5P_DEFAULT) <= 0) return false;
  const h5::Handle object(H5Oopen(file, kStatesGroup, H5P_DEFAULT), H5Oclose);
  return object.valid() && H5Iget_type(object.get()) == H5I_GROUP;
}

// The root datasets: the state dict, without the states group.
StateDict read_state(hid_t file, const std::string& where, const std::string& path) {
  const std::set<std::string> skip = has_states_group(file) ? std::set<std::string>{kStatesGroup} : std::set<std::string>{};
  return read_datasets(file, "", skip, /*undefined_allowed=*/false, where, path);
}

StateDict read_state(const std::string& path, const std::string& where) {
  const h5::Handle file = h5::open_file(path, where);
  return read_state(file.get(), where, path);
}

std::optional<StateDict> read_states_group(hid_t file, const std::string& where, const std::string& path) {
  if (!has_states_group(file)) return std::nullopt;
  const h5::Handle group(H5Gopen2(file, kStatesGroup, H5P_DEFAULT), H5Gclose);
  if (!group.valid()) {
    throw UsageError(where + ": cannot open '" + kStatesGroup + "' in '" + path + "': " + h5::last_error());
  }
  return read_datasets(group.get(), std::string(kStatesGroup) + "/", {}, /*undefined_allowed=*/true, where, path);
}

// A checkpoint must hold the module's dtypes: another precision is more likely a wrong file.
void check_dtypes(const std::map<std::string, DType>& module_dtypes, const StateDict& state,
                  const std::string& key_prefix, const std::string& where) {
  for (const auto& [key, value] : state) {
    const auto it = module_dtypes.find(key);
    if (value.defined() && it != module_dtypes.end() && it->second != value.dtype()) {
      throw TypeError(where + ": '" + key_prefix + key + "' is " + std::string(dtype_name(value.dtype())) +
                      " in the file but " + std::string(dtype_name(it->second)) + " in the module");
    }
  }
}

std::map<std::string, DType> parameter_and_buffer_dtypes(const ModuleBase& module) {
  std::map<std::string, DType> out;
  for (const auto& [name, p] : module.named_parameters()) out.emplace(name, p.value().dtype());
  for (const auto& [name, t] : module.named_buffers()) {
    if (t.defined()) out.emplace(name, t.dtype());
  }
  return out;
}

// The dtype each states key would be loaded as: its layer's.
std::map<std::string, DType> carried_state_dtypes(const ModuleBase& module) {
  std::map<std::string, DType> out;
  for (const auto& [path, layer] : detail::stateful_layers(module)) {
    const DType dtype = layer->param("weight_hh_l0").value().dtype();
    const std::string prefix = path.empty() ? "" : path + ".";
    out[prefix + "h"] = dtype;
    if (layer->kind() == RecurrentBase::Kind::Lstm) out[prefix + "c"] = dtype;
  }
  return out;
}

}  // namespace

StateDict load_state(const std::string& path) { return read_state(path, "load_state"); }

void save_checkpoint(const ModuleBase& module, const std::string& path) {
  std::vector<h5::Group> groups;
  StateDict carried = states(module);
  if (!carried.empty()) groups.push_back({kStatesGroup, std::move(carried)});
  h5::write_file_atomically(state_dict(module), path, /*chunk_rows=*/0, "save_checkpoint", groups);
}

LoadStateResult load_checkpoint(ModuleBase& module, const std::string& path, bool strict) {
  const std::string where = "load_checkpoint('" + path + "')";
  StateDict state;
  std::optional<StateDict> carried;
  {
    const h5::Handle file = h5::open_file(path, where);
    state = read_state(file.get(), where, path);
    carried = read_states_group(file.get(), where, path);
  }
  check_dtypes(parameter_and_buffer_dtypes(module), state, "", where);
  // Both parts are checked before either is loaded, so a failed load leaves the module as it was.
  std::optional<detail::StatesLoad> states_load;
  if (carried) {
    check_dtypes(carried_state_dtypes(module), *carried, std::string(kStatesGroup) + "/", where);
    states_load.emplace(module, *carried, strict, where + ": " + kStatesGroup + ": ");
  }
  // load_state_dict checks keys and shapes before copying anything; its errors get the file.
  // It copies into the module's own tensors (copy_), so each value lands on its parameter's or
  // buffer's device: a CUDA model loads a checkpoint saved from the CPU, and the reverse.
  LoadStateResult result;
  try {
    result = load_state_dict(module, state, strict);
  } catch (const IndexError& e) {
    throw IndexError(where + ": " + e.what());
  } catch (const ShapeError& e) {
    throw ShapeError(where + ": " + e.what());
  } catch (const TypeError& e) {
    throw TypeError(where + ": " + e.what());
  } catch (const UsageError& e) {
    throw UsageError(where + ": " + e.what());
  }
  if (states_load) {
    states_load->apply();
    for (const auto& key : states_load->result().missing_keys) result.missing_keys.push_back(kStatesGroup + ("/" + key));
    for (const auto& key : states_load->result().unexpected_keys) {
      result.unexpected_keys.push_back(kStatesGroup + ("/" + key));
    }
  }
  return result;
}

}  // namespace nn

}  // namespace zkynet
