#pragma once
// The model: a multilayer perceptron 784-256-128-10 with ReLU and a softmax
// cross-entropy loss, its gradient by backpropagation, and SGD with momentum.
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
#include <vector>

#include <dssync/core/random.hpp>
#include <dssync/sync/sfb.hpp>

#include "data.hpp"

namespace train {

struct Shape {
  int in = 784, h1 = 256, h2 = 128, out = 10;
  std::size_t size() const {
    return std::size_t(h1) * in + h1 + std::size_t(h2) * h1 + h2 + std::size_t(out) * h2 + out;
  }
};

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic>;  // column-major
using MatrixMap = Eigen::Map<Matrix>;
using ConstMatrixMap = Eigen::Map<const Matrix>;
using VectorMap = Eigen::Map<Eigen::VectorXf>;
using ConstVectorMap = Eigen::Map<const Eigen::VectorXf>;

// Views of the layers inside one flat buffer: W1, b1, W2, b2, W3, b3.
template <class M, class V, class Float>
struct LayersOf {
  M w1, w2, w3;
  V b1, b2, b3;
  LayersOf(Float* p, const Shape& s)
      : w1(p, s.h1, s.in), w2(p + off_w2(s), s.h2, s.h1), w3(p + off_w3(s), s.out, s.h2),
        b1(p + off_b1(s), s.h1), b2(p + off_b2(s), s.h2), b3(p + off_b3(s), s.out) {}
  static std::size_t off_b1(const Shape& s) { return std::size_t(s.h1) * s.in; }
  static std::size_t off_w2(const Shape& s) { return off_b1(s) + s.h1; }
  static std::size_t off_b2(const Shape& s) { return off_w2(s) + std::size_t(s.h2) * s.h1; }
  static std::size_t off_w3(const Shape& s) { return off_b2(s) + s.h2; }
  static std::size_t off_b3(const Shape& s) { return off_w3(s) + std::size_t(s.out) * s.h2; }
};
using Layers = LayersOf<MatrixMap, VectorMap, float>;
using ConstLayers = LayersOf<ConstMatrixMap, ConstVectorMap, const float>;

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

class Mlp {
 public:
  explicit Mlp(Shape shape = {}, int max_batch = 256)
      : shape_(shape), params_(shape.size()), velocity_(shape.size(), 0.0f), grad_(shape.size()) {
    reserve(max_batch);
  }

  const Shape& shape() const { return shape_; }
  std::span<float> params() { return params_; }
  std::span<const float> params() const { return params_; }
  std::span<float> gradient() { return grad_; }

  // The same on every worker for the same seed: weights and biases uniform in
  // +-1/sqrt(fan_in), as PyTorch initializes a Linear layer by default, drawn
  // with the library's portable generator.
  void init(std::uint64_t seed) {
    dssync::CounterRng rng(seed, 0x1417);
    Layers l(params_.data(), shape_);
    auto fill = [&](float* p, std::size_t n, int fan_in) {
      const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
      for (std::size_t i = 0; i < n; ++i)
        p[i] = static_cast<float>((static_cast<double>(rng.next() >> 11) * 0x1p-53 * 2.0 - 1.0) * bound);
    };
    fill(l.w1.data(), l.w1.size(), shape_.in);
    fill(l.b1.data(), l.b1.size(), shape_.in);
    fill(l.w2.data(), l.w2.size(), shape_.h1);
    fill(l.b2.data(), l.b2.size(), shape_.h1);
    fill(l.w3.data(), l.w3.size(), shape_.h2);
    fill(l.b3.data(), l.b3.size(), shape_.h2);
    std::fill(velocity_.begin(), velocity_.end(), 0.0f);
  }

  // The gradient of the mean loss over the batch (the columns of x, one per
  // sample, with their labels) into gradient(). Returns the summed loss.
  BatchResult compute_gradient(const float* x, const int* labels, int batch) {
    reserve(batch);
    const ConstMatrixMap X(x, shape_.in, batch);
    const ConstLayers l(params_.data(), shape_);
    Layers g(grad_.data(), shape_);
    auto a1 = a1_.leftCols(batch);
    auto a2 = a2_.leftCols(batch);
    auto z3 = z3_.leftCols(batch);
    forward(l, X, a1, a2, z3);
    // z3 becomes the softmax probabilities, then dL/dz3 = (p - onehot) / batch.
    const BatchResult r = softmax_loss(z3, labels, batch);
    const float inv = 1.0f / static_cast<float>(batch);
    for (int j = 0; j < batch; ++j) z3(labels[j], j) -= 1.0f;
    z3 *= inv;
    g.w3.noalias() = z3 * a2.transpose();
    g.b3 = z3.rowwise().sum();
    auto d2 = d2_.leftCols(batch);
    d2.noalias() = l.w3.transpose() * z3;
    d2 = (a2.array() > 0.0f).select(d2, 0.0f);
    g.w2.noalias() = d2 * a1.transpose();
    g.b2 = d2.rowwise().sum();
    auto d1 = d1_.leftCols(batch);
    d1.noalias() = l.w2.transpose() * d2;
    d1 = (a1.array() > 0.0f).select(d1, 0.0f);
    g.w1.noalias() = d1 * X.transpose();
    g.b1 = d1.rowwise().sum();
    // The factors: column-major blocks of `batch` columns, valid until the
    // next call (X is the caller's).
    factors_[0] = factor_view(shape_.h1, shape_.in, batch, x, d1_.data());
    factors_[1] = factor_view(shape_.h2, shape_.h1, batch, a1_.data(), d2_.data());
    factors_[2] = factor_view(shape_.out, shape_.h2, batch, a2_.data(), z3_.data());
    return r;
  }

  // W1, W2, W3 as SFBSync's layers, and the last batch's factors of their
  // gradients, in the same order.
  std::vector<dssync::SFBLayer> sfb_layers() const {
    return {sfb_layer(shape_.h1, shape_.in, 0),
            sfb_layer(shape_.h2, shape_.h1, Layers::off_w2(shape_)),
            sfb_layer(shape_.out, shape_.h2, Layers::off_w3(shape_))};
  }
  std::span<const dssync::FactorView> factors() const { return factors_; }

  // SGD with momentum as PyTorch writes it: v = mu v + g; p -= lr v. The
  // velocity is this worker's own and is never synchronized.
  void sgd_step(std::span<const float> g, float lr, float momentum) {
    float* __restrict p = params_.data();
    float* __restrict v = velocity_.data();
    const float* __restrict d = g.data();
    for (std::size_t i = 0; i < params_.size(); ++i) {
      v[i] = momentum * v[i] + d[i];
      p[i] -= lr * v[i];
    }
  }

  // Loss and accuracy of the parameters `p` (this model's shape) on a split,
  // in chunks of up to `chunk` samples.
  BatchResult evaluate(std::span<const float> p, const Split& s, int chunk = 250) {
    reserve(chunk);
    const ConstLayers l(p.data(), shape_);
    BatchResult total;
    for (std::size_t at = 0; at < s.size(); at += static_cast<std::size_t>(chunk)) {
      const int b = static_cast<int>(std::min<std::size_t>(chunk, s.size() - at));
      const ConstMatrixMap X(s.x.data() + at * s.features, shape_.in, b);
      auto a1 = a1_.leftCols(b);
      auto a2 = a2_.leftCols(b);
      auto z3 = z3_.leftCols(b);
      forward(l, X, a1, a2, z3);
      const BatchResult r = softmax_loss(z3, s.y.data() + at, b);
      total.loss_sum += r.loss_sum;
      total.correct += r.correct;
    }
    return total;
  }

 private:
  template <class X, class A1, class A2, class Z3>
  void forward(const ConstLayers& l, const X& x, A1& a1, A2& a2, Z3& z3) {
    a1.noalias() = l.w1 * x;
    a1.colwise() += l.b1;
    a1 = a1.cwiseMax(0.0f);
    a2.noalias() = l.w2 * a1;
    a2.colwise() += l.b2;
    a2 = a2.cwiseMax(0.0f);
    z3.noalias() = l.w3 * a2;
    z3.colwise() += l.b3;
  }

  void reserve(int batch) {
    if (a1_.cols() >= batch) return;
    a1_.resize(shape_.h1, batch);
    a2_.resize(shape_.h2, batch);
    z3_.resize(shape_.out, batch);
    d1_.resize(shape_.h1, batch);
    d2_.resize(shape_.h2, batch);
  }

  Shape shape_;
  std::vector<float> params_, velocity_, grad_;
  Matrix a1_, a2_, z3_, d1_, d2_;  // activations and their gradients, max batch wide
  dssync::FactorView factors_[3] = {};
};

}  // namespace train
