#pragma once
// The model: a multilayer perceptron 784-(hidden widths)-10, by default
// 784-256-128-10, with ReLU and a softmax cross-entropy loss, its gradient by backpropagation, and SGD with momentum.
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
#include <utility>
#include <vector>

#include <dssync/core/random.hpp>
#include <dssync/sync/sfb.hpp>

#include "data.hpp"

namespace train {

// 784 inputs, the hidden layers' widths, 10 outputs. Layer l maps width(l)
// inputs to width(l + 1) outputs; its weights (column-major, outputs x inputs)
// then its biases follow layer l - 1's in the flat buffer.
struct Shape {
  int in = 784;
  std::vector<int> hidden = {256, 128};
  int out = 10;
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
  std::size_t size() const { return weight_offset(layers()); }
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
        factors_(static_cast<std::size_t>(shape_.layers())) {
    for (const int w : shape_.hidden)
      if (w < 1) throw std::invalid_argument("every hidden layer needs at least one unit");
    reserve(max_batch);
  }

  const Shape& shape() const { return shape_; }
  std::span<float> params() { return params_; }
  std::span<const float> params() const { return params_; }
  std::span<float> gradient() { return grad_; }

  // The same on every worker for the same seed: weights and biases uniform in
  // +-1/sqrt(fan_in), as PyTorch initializes a Linear layer by default, drawn
  // with the library's portable generator, layer by layer in buffer order.
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
    std::fill(velocity_.begin(), velocity_.end(), 0.0f);
  }

  // The gradient of the mean loss over the batch (the columns of x, one per
  // sample, with their labels) into gradient(), at the parameters `at` (this
  // model's size; empty: params(), as StaleSync's view() may give older ones).
  // Returns the summed loss.
  BatchResult compute_gradient(const float* x, const int* labels, int batch,
                               std::span<const float> at = {}) {
    reserve(batch);
    const float* p = at.empty() ? params_.data() : at.data();
    const int last = shape_.layers() - 1;
    const ConstMatrixMap X(x, shape_.in, batch);
    forward(p, X, batch);
    // The logits become the softmax probabilities, then dL/dz = (p - onehot) / batch.
    auto z = a_[static_cast<std::size_t>(last)].leftCols(batch);
    const BatchResult r = softmax_loss(z, labels, batch);
    const float inv = 1.0f / static_cast<float>(batch);
    for (int j = 0; j < batch; ++j) z(labels[j], j) -= 1.0f;
    z *= inv;
    // Back from the output: layer l's error D (the output's is z) gives its
    // gradient D Aᵀ and, through Wᵀ and the ReLU's mask, layer l - 1's error.
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
    };
    for (int l = last; l >= 0; --l) {
      const auto& d = l == last ? a_[static_cast<std::size_t>(last)] : d_[static_cast<std::size_t>(l)];
      if (l == 0)
        layer(l, X, d.leftCols(batch));
      else
        layer(l, a_[static_cast<std::size_t>(l - 1)].leftCols(batch), d.leftCols(batch));
    }
    // The factors: column-major blocks of `batch` columns, valid until the
    // next call (X is the caller's).
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
  // in chunks of up to `chunk` samples.
  BatchResult evaluate(std::span<const float> p, const Split& s, int chunk = 250) {
    reserve(chunk);
    return evaluate_in_chunks(s, shape_.in, chunk, [&](const ConstMatrixMap& X, int b) {
      forward(p.data(), X, b);
      return a_.back().leftCols(b);
    });
  }

 private:
  // a_[l] = W_l a_[l - 1] + b_l (a_[-1] the input x), through a ReLU but for
  // the last layer, whose a_ holds the logits.
  template <class X>
  void forward(const float* p, const X& x, int batch) {
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
      if (l < last) a = a.cwiseMax(0.0f);
    }
  }

  void reserve(int batch) {
    if (a_[0].cols() >= batch) return;
    for (int l = 0; l < shape_.layers(); ++l) {
      a_[static_cast<std::size_t>(l)].resize(shape_.width(l + 1), batch);
      if (l + 1 < shape_.layers()) d_[static_cast<std::size_t>(l)].resize(shape_.width(l + 1), batch);
    }
  }

  Shape shape_;
  std::vector<float> params_, velocity_, grad_;
  // a_[l]: layer l's activations (the last: logits, then the output's error);
  // d_[l]: the error at hidden layer l's output. Max batch wide.
  std::vector<Matrix> a_, d_;
  std::vector<dssync::FactorView> factors_;
};

}  // namespace train
