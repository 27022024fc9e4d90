#pragma once
// Fashion-MNIST (or any MNIST-shaped data set) from its four gzip-compressed
// IDX files. Every way a file can be wrong (missing, truncated, corrupted,
// another format) is an exception naming the file; nothing is read short in
// silence.
//
// IDX: a big-endian header, magic 0x00000803 for images (then count, rows,
// columns as 32-bit integers) or 0x00000801 for labels (then count), followed
// by count x rows x columns (or count) unsigned bytes.

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace train {

// Where Debian's dataset-fashion-mnist puts the files.
inline constexpr const char* default_data_dir = "/usr/share/datasets/fashion-mnist";

class data_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A gzip file read to its end, checked: the whole stream must decompress
// (gzip's own CRC and length check catch a corrupted file) and nothing may be
// missing.
inline std::vector<unsigned char> read_gzip(const std::filesystem::path& file) {
  const std::string name = file.string();
  if (!std::filesystem::exists(file))
    throw data_error(name + ": no such file (on Debian: apt-get install dataset-fashion-mnist, or "
                            "pass --data DIR with the four IDX .gz files)");
  std::unique_ptr<gzFile_s, int (*)(gzFile)> gz(gzopen(name.c_str(), "rb"), gzclose);
  if (!gz) throw data_error(name + ": cannot open");
  std::vector<unsigned char> out;
  std::array<unsigned char, 1 << 16> chunk;
  for (;;) {
    const int got = gzread(gz.get(), chunk.data(), static_cast<unsigned>(chunk.size()));
    if (got < 0) {
      int code = 0;
      const char* why = gzerror(gz.get(), &code);
      throw data_error(name + ": not a valid gzip stream (" + (why ? why : "unknown error") +
                       "): the file is corrupted; reinstall dataset-fashion-mnist");
    }
    if (got == 0) break;
    out.insert(out.end(), chunk.begin(), chunk.begin() + got);
  }
  // gzread returns 0 at a premature end as well as at a clean one; gzerror
  // tells them apart.
  int code = 0;
  const char* why = gzerror(gz.get(), &code);
  if (code == Z_BUF_ERROR)
    throw data_error(name + ": the gzip stream ends early: the file is truncated");
  if (code != Z_OK)
    throw data_error(name + ": " + (why ? why : "read error") + ": the file is corrupted");
  // zlib reads a file without a gzip header as it is: another format.
  if (!out.empty() && gzdirect(gz.get()))
    throw data_error(name +
                     ": not a gzip file (the IDX files are read compressed, as Debian "
                     "installs them)");
  return out;
}

namespace detail {
inline std::uint32_t be32(const std::vector<unsigned char>& b, std::size_t at) {
  return std::uint32_t{b[at]} << 24 | std::uint32_t{b[at + 1]} << 16 | std::uint32_t{b[at + 2]} << 8 |
         std::uint32_t{b[at + 3]};
}
}  // namespace detail

struct Images {
  std::size_t count = 0, rows = 0, cols = 0;
  std::vector<unsigned char> pixels;  // count x rows x cols, row-major per image
};

inline Images read_images(const std::filesystem::path& file) {
  const auto b = read_gzip(file);
  const std::string name = file.string();
  if (b.size() < 16) throw data_error(name + ": too short for an IDX image header");
  if (detail::be32(b, 0) != 0x00000803)
    throw data_error(name + ": not an IDX image file (magic " + std::to_string(detail::be32(b, 0)) +
                     ", expected 2051)");
  Images im{detail::be32(b, 4), detail::be32(b, 8), detail::be32(b, 12), {}};
  if (im.rows == 0 || im.cols == 0 || im.rows > 4096 || im.cols > 4096)
    throw data_error(name + ": implausible image size " + std::to_string(im.rows) + " x " +
                     std::to_string(im.cols));
  const std::size_t want = im.count * im.rows * im.cols;
  if (b.size() - 16 != want)
    throw data_error(name + ": the header promises " + std::to_string(im.count) + " images of " +
                     std::to_string(im.rows) + " x " + std::to_string(im.cols) + " (" +
                     std::to_string(want) + " bytes), the file holds " + std::to_string(b.size() - 16) +
                     ": truncated or corrupted");
  im.pixels.assign(b.begin() + 16, b.end());
  return im;
}

inline std::vector<unsigned char> read_labels(const std::filesystem::path& file, int classes) {
  const auto b = read_gzip(file);
  const std::string name = file.string();
  if (b.size() < 8) throw data_error(name + ": too short for an IDX label header");
  if (detail::be32(b, 0) != 0x00000801)
    throw data_error(name + ": not an IDX label file (magic " + std::to_string(detail::be32(b, 0)) +
                     ", expected 2049)");
  const std::size_t count = detail::be32(b, 4);
  if (b.size() - 8 != count)
    throw data_error(name + ": the header promises " + std::to_string(count) +
                     " labels, the file holds " + std::to_string(b.size() - 8) +
                     ": truncated or corrupted");
  std::vector<unsigned char> labels(b.begin() + 8, b.end());
  for (std::size_t i = 0; i < labels.size(); ++i)
    if (labels[i] >= classes)
      throw data_error(name + ": label " + std::to_string(labels[i]) + " at index " + std::to_string(i) +
                       " is not one of the " + std::to_string(classes) + " classes");
  return labels;
}

// Images as floats, one column per image (features x count), standardized
// with the training set's pixel mean and deviation; labels as integers.
struct Split {
  std::size_t features = 0;
  std::vector<float> x;  // features x count, column-major
  std::vector<int> y;
  std::size_t size() const { return y.size(); }
};

struct Dataset {
  Split train, test;
  static constexpr int classes = 10;
};

inline Split make_split(const Images& im, const std::vector<unsigned char>& labels, float mean,
                        float deviation, const std::string& what) {
  if (labels.size() != im.count)
    throw data_error(what + ": " + std::to_string(im.count) + " images but " +
                     std::to_string(labels.size()) + " labels");
  Split s;
  s.features = im.rows * im.cols;
  s.x.resize(im.pixels.size());
  const float scale = 1.0f / (255.0f * deviation);
  for (std::size_t i = 0; i < im.pixels.size(); ++i)
    s.x[i] = static_cast<float>(im.pixels[i]) * scale - mean / deviation;
  s.y.assign(labels.begin(), labels.end());
  return s;
}

// Reads train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
// t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz from dir.
inline Dataset load_dataset(const std::filesystem::path& dir) {
  const Images train_images = read_images(dir / "train-images-idx3-ubyte.gz");
  const auto train_labels = read_labels(dir / "train-labels-idx1-ubyte.gz", Dataset::classes);
  const Images test_images = read_images(dir / "t10k-images-idx3-ubyte.gz");
  const auto test_labels = read_labels(dir / "t10k-labels-idx1-ubyte.gz", Dataset::classes);
  if (train_images.rows != test_images.rows || train_images.cols != test_images.cols)
    throw data_error(dir.string() + ": training and test images differ in size");
  if (train_images.count == 0) throw data_error(dir.string() + ": the training set is empty");
  // Standardize with the training set's statistics (pixels in [0, 1]).
  double sum = 0, sum2 = 0;
  for (unsigned char p : train_images.pixels) {
    const double v = p / 255.0;
    sum += v;
    sum2 += v * v;
  }
  const double n = static_cast<double>(train_images.pixels.size());
  const double mean = sum / n;
  const double deviation = std::max(1e-6, std::sqrt(std::max(0.0, sum2 / n - mean * mean)));
  Dataset d;
  d.train = make_split(train_images, train_labels, static_cast<float>(mean),
                       static_cast<float>(deviation), (dir / "train-*").string());
  d.test = make_split(test_images, test_labels, static_cast<float>(mean), static_cast<float>(deviation),
                      (dir / "t10k-*").string());
  return d;
}

}  // namespace train
