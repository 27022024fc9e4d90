#pragma once
// The model: a multilayer perceptron 784-(hidden widths)-10, by default
// 784-256-128-10, with ReLU and a softmax cross-entropy loss, its gradient by backpropagation, and
// SGD with momentum. Optionally (--norm) a batch or group normalization after each hidden linear
// layer, before the ReLU, with a learnable scale and shift per unit.
// All parameters live in one contiguous float buffer, so that a synchronizer
// averages the whole model as one span; Eigen maps the layers onto it. The
// GEMMs are Eigen's; a batch is a matrix with one column per sample.
//
// Each weight gradient is the product D Aᵀ of the layer's back-propagated error
// D (outputs x batch, carrying the 1/batch of the mean) and its input A (inputs
// x batch): the sufficient factors that SFBSync (dssync/sync/sfb.hpp) can send
// instead of the matrix. factors() exposes the ones backprop computes anyway.

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <dssync/core/random.hpp>
#include <dssync/sync/sfb.hpp>

#include "data.hpp"

namespace train {

// The normalization after each hidden linear layer (before the ReLU):
//  - none: the plain MLP, the same bits as before normalization existed;
//  - batch: each unit over the batch (at training time; the running mean and
//    variance, momentum 0.1 and the unbiased variance as PyTorch keeps them,
//    at evaluation);
//  - group:G: per sample, the layer's units in G contiguous groups, each
//    normalized by its own mean and variance (the same at training and
//    evaluation). G must divide every hidden width.
// Both then scale and shift each unit by learnable parameters (1 and 0 at
// the start). eps = 1e-5 under the square root, as PyTorch's.
struct Norm {
  enum class Kind { none, batch, group };
  Kind kind = Kind::none;
  int groups = 0;  // group: G

  static constexpr float eps = 1e-5f;
  static constexpr float momentum = 0.1f;  // batch: running = (1 - m) running + m batch

  // "none", "batch" or "group:G" (G a positive integer).
  static Norm parse(const std::string& spec) {
    if (spec == "none") return {};
    if (spec == "batch") return {Kind::batch, 0};
    if (spec.starts_with("group:")) {
      const std::string g = spec.substr(6);
      std::size_t used = 0;
      int groups = 0;
      try {
        groups = std::stoi(g, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (g.empty() || used != g.size() || groups < 1)
        throw std::invalid_argument("--norm " + spec + ": G must be a positive integer (group:G)");
      return {Kind::group, groups};
    }
    throw std::invalid_argument("unknown --norm '" + spec + "' (none, batch, group:G)");
  }
  std::string name() const {
    return kind == Kind::none    ? "none"
           : kind == Kind::batch ? "batch"
                                 : "group:" + std::to_string(groups);
  }
  bool any() const { return kind != Kind::none; }
  bool operator==(const Norm&) const = default;
};

// 784 inputs, the hidden layers' widths, 10 outputs. Layer l maps width(l)
// inputs to width(l + 1) outputs; its weights (column-major, outputs x inputs)
// then its biases follow layer l - 1's in the flat buffer. With a norm, the
// linear layers keep exactly these offsets (so SFB's layers and the
// initialization are the plain MLP's), and after them come the norms'
// trainable scales and shifts (hidden layer h: its scale, then its shift),
// then, for batch norm only, the running statistics (hidden layer h: its mean,
// then its variance). The running statistics are last, after every trainable
// parameter, and their gradient is always zero, so an SGD step leaves them as
// they are; they change only in a training forward pass. Being in the buffer,
// they are synchronized with the model: a synchronizer that averages
// parameters (DS-Sync, gossip, local SGD, ShadowSync's shadow-ma and
// shadow-ds) averages them too, and so does the trainer's averaged model at a
// record; BSP, which all-reduces gradients, passes their zeros, and each
// worker keeps its own statistics. ShadowSync's rounds that are not a plain
// average (shadow-bmuf's block momentum, shadow-easgd's elastic pull) would
// extrapolate them, a variance below zero included: they are given only the
// trainable() parameters (make_sync), and each worker keeps its own
// statistics there too, as under BSP.
struct Shape {
  int in = 784;
  std::vector<int> hidden = {256, 128};
  int out = 10;
  Norm norm{};
  int layers() const { return static_cast<int>(hidden.size()) + 1; }
  // The width of activation i: 0 the input, layers() the output.
  int width(int i) const {
    return i == 0 ? in : i == layers() ? out : hidden[static_cast<std::size_t>(i - 1)];
  }
  std::size_t weights(int l) const { return std::size_t(width(l + 1)) * width(l); }
  std::size_t weight_offset(int l) const {
    std::size_t at = 0;
    for (int k = 0; k < l; ++k) at += weights(k) + std::size_t(width(k + 1));
    return at;
  }
  std::size_t bias_offset(int l) const { return weight_offset(l) + weights(l); }
  // The linear layers' weights and biases: the whole model without a norm.
  std::size_t linear_size() const { return weight_offset(layers()); }
  // Hidden units before hidden layer h (the output of linear layer h).
  std::size_t units_before(std::size_t h) const {
    std::size_t at = 0;
    for (std::size_t k = 0; k < h; ++k) at += std::size_t(hidden[k]);
    return at;
  }
  std::size_t scale_offset(std::size_t h) const { return linear_size() + 2 * units_before(h); }
  std::size_t shift_offset(std::size_t h) const { return scale_offset(h) + std::size_t(hidden[h]); }
  // Everything a gradient step changes.
  std::size_t trainable() const {
    return linear_size() + (norm.any() ? 2 * units_before(hidden.size()) : 0);
  }
  std::size_t mean_offset(std::size_t h) const { return trainable() + 2 * units_before(h); }
  std::size_t var_offset(std::size_t h) const { return mean_offset(h) + std::size_t(hidden[h]); }
  std::size_t size() const {
    return trainable() + (norm.kind == Norm::Kind::batch ? 2 * units_before(hidden.size()) : 0);
  }
};

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic>;  // column-major
using MatrixMap = Eigen::Map<Matrix>;
using ConstMatrixMap = Eigen::Map<const Matrix>;
using VectorMap = Eigen::Map<Eigen::VectorXf>;
using ConstVectorMap = Eigen::Map<const Eigen::VectorXf>;

// Loss summed over a batch and how many it classified right.
struct BatchResult {
  double loss_sum = 0;
  std::size_t correct = 0;
};

// Replaces the logits (one column per sample) by softmax probabilities
// (shifted by the column's maximum for stability); returns the summed
// cross-entropy and the hits.
template <class Z>
BatchResult softmax_loss(Z& z, const int* labels, int batch) {
  BatchResult r;
  for (int j = 0; j < batch; ++j) {
    auto col = z.col(j);
    Eigen::Index arg = 0;
    const float top = col.maxCoeff(&arg);
    col.array() = (col.array() - top).exp();
    const float sum = col.sum();
    col /= sum;
    r.loss_sum -= std::log(std::max(col(labels[j]), 1e-30f));
    if (arg == labels[j]) ++r.correct;
  }
  return r;
}

// A weight matrix of `outputs` x `inputs` stored column-major at `offset` is,
// read row-major, inputs x outputs: its gradient D Aᵀ is then A Dᵀ, the
// factors (U, V) = (A, D). Biases are left to the dense all-reduce.
inline dssync::SFBLayer sfb_layer(int outputs, int inputs, std::size_t offset) {
  return {inputs, outputs, offset};
}
inline dssync::FactorView factor_view(int outputs, int inputs, int batch, const float* a,
                                      const float* d) {
  return {inputs, outputs, batch, a, d};
}

// SGD with momentum as PyTorch writes it: v = mu v + g; p -= lr v. The
// velocity is this worker's own and is never synchronized.
inline void momentum_step(std::span<float> params, std::span<float> velocity,
                          std::span<const float> g, float lr, float momentum) {
  float* __restrict p = params.data();
  float* __restrict v = velocity.data();
  const float* __restrict d = g.data();
  for (std::size_t i = 0; i < params.size(); ++i) {
    v[i] = momentum * v[i] + d[i];
    p[i] -= lr * v[i];
  }
}

// Loss and accuracy on a split, in chunks of up to `chunk` samples:
// logits(X, b) computes the chunk's logits (outputs x b) from its inputs X.
template <class Logits>
BatchResult evaluate_in_chunks(const Split& s, int inputs, int chunk, Logits&& logits) {
  BatchResult total;
  for (std::size_t at = 0; at < s.size(); at += static_cast<std::size_t>(chunk)) {
    const int b = static_cast<int>(std::min<std::size_t>(chunk, s.size() - at));
    const ConstMatrixMap X(s.x.data() + at * s.features, inputs, b);
    auto z = logits(X, b);
    const BatchResult r = softmax_loss(z, s.y.data() + at, b);
    total.loss_sum += r.loss_sum;
    total.correct += r.correct;
  }
  return total;
}

class Mlp {
 public:
  explicit Mlp(Shape shape = {}, int max_batch = 256)
      : shape_(std::move(shape)),
        params_(shape_.size()),
        velocity_(shape_.size(), 0.0f),
        grad_(shape_.size()),
        a_(static_cast<std::size_t>(shape_.layers())),
        d_(static_cast<std::size_t>(shape_.layers() - 1)),
        xhat_(shape_.norm.any() ? shape_.hidden.size() : 0),
        istd_(shape_.norm.any() ? shape_.hidden.size() : 0),
        factors_(static_cast<std::size_t>(shape_.layers())) {
    for (const int w : shape_.hidden)
      if (w < 1) throw std::invalid_argument("every hidden layer needs at least one unit");
    if (shape_.norm.kind == Norm::Kind::group)
      for (std::size_t h = 0; h < shape_.hidden.size(); ++h)
        if (shape_.hidden[h] % shape_.norm.groups != 0)
          throw std::invalid_argument(
              "--norm " + shape_.norm.name() + ": " + std::to_string(shape_.norm.groups) +
              " groups do not divide hidden layer " + std::to_string(h + 1) + "'s width " +
              std::to_string(shape_.hidden[h]));
    if (shape_.norm.any()) {
      int widest = 0;
      for (const int w : shape_.hidden) widest = std::max(widest, w);
      row_a_.resize(widest);
      row_b_.resize(widest);
    }
    reserve(max_batch);
  }

  const Shape& shape() const { return shape_; }
  std::span<float> params() { return params_; }
  std::span<const float> params() const { return params_; }
  std::span<float> gradient() { return grad_; }

  // The same on every worker for the same seed: weights and biases uniform in
  // +-1/sqrt(fan_in), as PyTorch initializes a Linear layer by default, drawn
  // with the library's portable generator, layer by layer in buffer order.
  // A norm's scales start at 1 and shifts at 0, batch norm's running means at
  // 0 and variances at 1 (PyTorch's), none of them drawn: the linear layers
  // get the same numbers with and without a norm.
  void init(std::uint64_t seed) {
    dssync::CounterRng rng(seed, 0x1417);
    auto fill = [&](float* p, std::size_t n, int fan_in) {
      const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
      for (std::size_t i = 0; i < n; ++i)
        p[i] = static_cast<float>((static_cast<double>(rng.next() >> 11) * 0x1p-53 * 2.0 - 1.0) * bound);
    };
    for (int l = 0; l < shape_.layers(); ++l) {
      fill(params_.data() + shape_.weight_offset(l), shape_.weights(l), shape_.width(l));
      fill(params_.data() + shape_.bias_offset(l), std::size_t(shape_.width(l + 1)), shape_.width(l));
    }
    for (std::size_t h = 0; h < xhat_.size(); ++h) {
      const auto w = static_cast<std::size_t>(shape_.hidden[h]);
      std::fill_n(params_.data() + shape_.scale_offset(h), w, 1.0f);
      std::fill_n(params_.data() + shape_.shift_offset(h), w, 0.0f);
      if (shape_.norm.kind == Norm::Kind::batch) {
        std::fill_n(params_.data() + shape_.mean_offset(h), w, 0.0f);
        std::fill_n(params_.data() + shape_.var_offset(h), w, 1.0f);
      }
    }
    std::fill(velocity_.begin(), velocity_.end(), 0.0f);
  }

  // The gradient of the mean loss over the batch (the columns of x, one per
  // sample, with their labels) into gradient(), at the parameters `at` (this
  // model's size; empty: params(), as StaleSync's view() may give older ones).
  // Returns the summed loss. With batch norm, the forward pass normalizes by
  // the batch's statistics and moves the running statistics in params() (this
  // worker's own, even when `at` is an older view) towards them.
  BatchResult compute_gradient(const float* x, const int* labels, int batch,
                               std::span<const float> at = {}) {
    if (shape_.norm.kind == Norm::Kind::batch && batch < 2)
      throw std::invalid_argument("--norm batch needs a batch of at least 2 samples (got " +
                                  std::to_string(batch) + ")");
    reserve(batch);
    const float* p = at.empty() ? params_.data() : at.data();
    const int last = shape_.layers() - 1;
    const ConstMatrixMap X(x, shape_.in, batch);
    forward(p, X, batch, true);
    // The logits become the softmax probabilities, then dL/dz = (p - onehot) / batch.
    auto z = a_[static_cast<std::size_t>(last)].leftCols(batch);
    const BatchResult r = softmax_loss(z, labels, batch);
    const float inv = 1.0f / static_cast<float>(batch);
    for (int j = 0; j < batch; ++j) z(labels[j], j) -= 1.0f;
    z *= inv;
    // Back from the output: layer l's error D (the output's is z) gives its
    // gradient D Aᵀ and, through Wᵀ and the ReLU's mask, layer l - 1's error
    // (with a norm: at the norm's output, and then through the norm back to
    // the linear layer's output, where D Aᵀ needs it).
    auto layer = [&](int l, const auto& a, const auto& d) {
      MatrixMap gw(grad_.data() + shape_.weight_offset(l), shape_.width(l + 1), shape_.width(l));
      VectorMap gb(grad_.data() + shape_.bias_offset(l), shape_.width(l + 1));
      gw.noalias() = d * a.transpose();
      gb = d.rowwise().sum();
      if (l == 0) return;
      const ConstMatrixMap w(p + shape_.weight_offset(l), shape_.width(l + 1), shape_.width(l));
      auto below = d_[static_cast<std::size_t>(l - 1)].leftCols(batch);
      below.noalias() = w.transpose() * d;
      below = (a.array() > 0.0f).select(below, 0.0f);
      if (shape_.norm.any()) norm_backward(static_cast<std::size_t>(l - 1), p, below, batch);
    };
    for (int l = last; l >= 0; --l) {
      const auto& d = l == last ? a_[static_cast<std::size_t>(last)] : d_[static_cast<std::size_t>(l)];
      if (l == 0)
        layer(l, X, d.leftCols(batch));
      else
        layer(l, a_[static_cast<std::size_t>(l - 1)].leftCols(batch), d.leftCols(batch));
    }
    // The running statistics are not trained.
    std::fill(grad_.begin() + static_cast<std::ptrdiff_t>(shape_.trainable()), grad_.end(), 0.0f);
    // The factors: column-major blocks of `batch` columns, valid until the
    // next call (X is the caller's). With a norm, D is the error at the linear
    // layer's output, before the norm, so D Aᵀ is still the weights' gradient
    // (the norm sees only the layer's outputs): SFB works unchanged, and the
    // norms' scales and shifts go to its dense all-reduce with the biases.
    for (int l = 0; l <= last; ++l) {
      const auto i = static_cast<std::size_t>(l);
      factors_[i] = factor_view(shape_.width(l + 1), shape_.width(l), batch,
                                l == 0 ? x : a_[i - 1].data(),
                                l == last ? a_[i].data() : d_[i].data());
    }
    return r;
  }

  // The weight matrices as SFBSync's layers, and the last batch's factors of
  // their gradients, in the same order.
  std::vector<dssync::SFBLayer> sfb_layers() const {
    std::vector<dssync::SFBLayer> layers;
    for (int l = 0; l < shape_.layers(); ++l)
      layers.push_back(sfb_layer(shape_.width(l + 1), shape_.width(l), shape_.weight_offset(l)));
    return layers;
  }
  std::span<const dssync::FactorView> factors() const { return factors_; }

  void sgd_step(std::span<const float> g, float lr, float momentum) {
    momentum_step(params_, velocity_, g, lr, momentum);
  }

  // Loss and accuracy of the parameters `p` (this model's shape) on a split,
  // in chunks of up to `chunk` samples. Batch norm normalizes with p's running
  // statistics here.
  BatchResult evaluate(std::span<const float> p, const Split& s, int chunk = 250) {
    reserve(chunk);
    return evaluate_in_chunks(s, shape_.in, chunk, [&](const ConstMatrixMap& X, int b) {
      forward(p.data(), X, b, false);
      return a_.back().leftCols(b);
    });
  }

 private:
  // a_[l] = W_l a_[l - 1] + b_l (a_[-1] the input x), through the norm (if
  // any) and a ReLU but for the last layer, whose a_ holds the logits.
  template <class X>
  void forward(const float* p, const X& x, int batch, bool training) {
    const int last = shape_.layers() - 1;
    for (int l = 0; l <= last; ++l) {
      const ConstMatrixMap w(p + shape_.weight_offset(l), shape_.width(l + 1), shape_.width(l));
      const ConstVectorMap b(p + shape_.bias_offset(l), shape_.width(l + 1));
      auto a = a_[static_cast<std::size_t>(l)].leftCols(batch);
      if (l == 0)
        a.noalias() = w * x;
      else
        a.noalias() = w * a_[static_cast<std::size_t>(l - 1)].leftCols(batch);
      a.colwise() += b;
      if (l < last && shape_.norm.any())
        norm_forward(static_cast<std::size_t>(l), p, a, batch, training);
      if (l < last) a = a.cwiseMax(0.0f);
    }
  }

  // Hidden layer h's norm, in place on its linear output z (width x batch):
  // xhat_[h] = the normalized z, istd_[h] = 1 / sqrt(var + eps) (batch: one
  // per unit; group: one per group and sample), z = scale xhat + shift.
  template <class Z>
  void norm_forward(std::size_t h, const float* p, Z& z, int batch, bool training) {
    const int width = shape_.hidden[h];
    auto xhat = xhat_[h].leftCols(batch);
    if (shape_.norm.kind == Norm::Kind::batch) {
      auto istd = istd_[h].col(0);
      auto mean = row_a_.head(width);
      auto var = row_b_.head(width);
      if (training) {
        mean = z.rowwise().mean();
        var = (z.colwise() - mean).array().square().rowwise().mean().matrix();
        // The running statistics are this worker's own (params_), moved
        // towards the batch's, whatever parameters `p` the pass used.
        VectorMap rm(params_.data() + shape_.mean_offset(h), width);
        VectorMap rv(params_.data() + shape_.var_offset(h), width);
        const float m = Norm::momentum;
        const float unbiased = static_cast<float>(batch) / static_cast<float>(batch - 1);
        rm = (1.0f - m) * rm + m * mean;
        rv = (1.0f - m) * rv + (m * unbiased) * var;
      } else {
        mean = ConstVectorMap(p + shape_.mean_offset(h), width);
        var = ConstVectorMap(p + shape_.var_offset(h), width);
      }
      istd = (var.array() + Norm::eps).rsqrt().matrix();
      xhat = ((z.colwise() - mean).array().colwise() * istd.array()).matrix();
    } else {
      const int groups = shape_.norm.groups, m = width / groups;
      for (int j = 0; j < batch; ++j)
        for (int g = 0; g < groups; ++g) {
          const auto seg = z.col(j).segment(g * m, m);
          const float mean = seg.mean();
          const float var = (seg.array() - mean).square().mean();
          const float istd = 1.0f / std::sqrt(var + Norm::eps);
          istd_[h](g, j) = istd;
          xhat.col(j).segment(g * m, m) = ((seg.array() - mean) * istd).matrix();
        }
    }
    const ConstVectorMap scale(p + shape_.scale_offset(h), width),
        shift(p + shape_.shift_offset(h), width);
    z = ((xhat.array().colwise() * scale.array()).colwise() + shift.array()).matrix();
  }

  // Hidden layer h's norm backwards: dy (width x batch), the error at the
  // norm's output, becomes the error at its input z, in place; the scale's and
  // shift's gradients go to grad_. With dxhat = scale dy, over the set S a
  // statistic was taken on (batch: a unit's samples; group: a sample's group),
  // dz = istd (dxhat - mean_S dxhat - xhat mean_S(dxhat xhat)).
  template <class D>
  void norm_backward(std::size_t h, const float* p, D& dy, int batch) {
    const int width = shape_.hidden[h];
    const auto xhat = xhat_[h].leftCols(batch);
    VectorMap gscale(grad_.data() + shape_.scale_offset(h), width);
    VectorMap gshift(grad_.data() + shape_.shift_offset(h), width);
    gscale = (dy.array() * xhat.array()).rowwise().sum().matrix();
    gshift = dy.rowwise().sum();
    const ConstVectorMap scale(p + shape_.scale_offset(h), width);
    dy = (dy.array().colwise() * scale.array()).matrix();  // now dxhat
    if (shape_.norm.kind == Norm::Kind::batch) {
      auto mean_d = row_a_.head(width);
      auto mean_dx = row_b_.head(width);
      mean_d = dy.rowwise().mean();
      mean_dx = (dy.array() * xhat.array()).rowwise().mean().matrix();
      const auto istd = istd_[h].col(0);
      dy = (((dy.colwise() - mean_d).array() - xhat.array().colwise() * mean_dx.array()).colwise() *
            istd.array())
               .matrix();
    } else {
      const int groups = shape_.norm.groups, m = width / groups;
      for (int j = 0; j < batch; ++j)
        for (int g = 0; g < groups; ++g) {
          auto seg = dy.col(j).segment(g * m, m);
          const auto xs = xhat.col(j).segment(g * m, m);
          const float mean_d = seg.mean();
          const float mean_dx = (seg.array() * xs.array()).mean();
          seg = ((seg.array() - mean_d - xs.array() * mean_dx) * istd_[h](g, j)).matrix();
        }
    }
  }

  void reserve(int batch) {
    if (a_[0].cols() >= batch) return;
    for (int l = 0; l < shape_.layers(); ++l) {
      a_[static_cast<std::size_t>(l)].resize(shape_.width(l + 1), batch);
      if (l + 1 < shape_.layers()) d_[static_cast<std::size_t>(l)].resize(shape_.width(l + 1), batch);
    }
    for (std::size_t h = 0; h < xhat_.size(); ++h) {
      xhat_[h].resize(shape_.hidden[h], batch);
      if (shape_.norm.kind == Norm::Kind::batch)
        istd_[h].resize(shape_.hidden[h], 1);
      else
        istd_[h].resize(shape_.norm.groups, batch);
    }
  }

  Shape shape_;
  std::vector<float> params_, velocity_, grad_;
  // a_[l]: layer l's activations (the last: logits, then the output's error);
  // d_[l]: the error at hidden layer l's output (with a norm: at the linear
  // layer's output, before the norm). Max batch wide.
  std::vector<Matrix> a_, d_;
  // With a norm, per hidden layer: the normalized outputs and the inverse
  // deviations of the last forward pass; two scratch vectors as wide as the
  // widest layer.
  std::vector<Matrix> xhat_, istd_;
  Eigen::VectorXf row_a_, row_b_;
  std::vector<dssync::FactorView> factors_;
};

}  // namespace train
