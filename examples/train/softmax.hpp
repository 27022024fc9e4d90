#pragma once
// Multiclass logistic regression (softmax regression), 784 -> 10: one weight
// matrix and its biases, the same face as Mlp for the trainer. Its weight
// gradient is (P - Y) Xᵀ / batch, P the batch's probabilities and Y the
// one-hot labels: the sufficient factors (X, (P - Y) / batch). With only 10
// outputs the factors are the larger message as soon as the ranks' batches sum
// past 2 x 784 x 10 / (784 + 10) = 19.7 samples, so SFBSync's hybrid sends it
// dense (docs/method.md, "Sufficient factor broadcasting").

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <dssync/core/random.hpp>
#include <dssync/sync/sfb.hpp>

#include "data.hpp"
#include "mlp.hpp"

namespace train {

struct SoftmaxShape {
  int in = 784, out = 10;
  std::size_t size() const { return std::size_t(out) * in + out; }
};

class Softmax {
 public:
  explicit Softmax(SoftmaxShape shape = {}, int max_batch = 256)
      : shape_(shape), params_(shape.size()), velocity_(shape.size(), 0.0f), grad_(shape.size()) {
    reserve(max_batch);
  }

  const SoftmaxShape& shape() const { return shape_; }
  std::span<float> params() { return params_; }
  std::span<const float> params() const { return params_; }
  std::span<float> gradient() { return grad_; }

  // As Mlp::init: uniform in +-1/sqrt(fan_in), from the library's generator.
  void init(std::uint64_t seed) {
    dssync::CounterRng rng(seed, 0x1417);
    const double bound = 1.0 / std::sqrt(static_cast<double>(shape_.in));
    for (auto& p : params_)
      p = static_cast<float>((static_cast<double>(rng.next() >> 11) * 0x1p-53 * 2.0 - 1.0) * bound);
    std::fill(velocity_.begin(), velocity_.end(), 0.0f);
  }

  // The gradient of the mean loss over the batch into gradient(), at the
  // parameters `at` (empty: params()), as Mlp::compute_gradient.
  BatchResult compute_gradient(const float* x, const int* labels, int batch,
                               std::span<const float> at = {}) {
    reserve(batch);
    const ConstMatrixMap X(x, shape_.in, batch);
    auto z = z_.leftCols(batch);
    forward(at.empty() ? params_.data() : at.data(), X, z);
    const BatchResult r = softmax_loss(z, labels, batch);
    for (int j = 0; j < batch; ++j) z(labels[j], j) -= 1.0f;
    z *= 1.0f / static_cast<float>(batch);
    MatrixMap gw(grad_.data(), shape_.out, shape_.in);
    VectorMap gb(grad_.data() + weights(), shape_.out);
    gw.noalias() = z * X.transpose();
    gb = z.rowwise().sum();
    factors_[0] = factor_view(shape_.out, shape_.in, batch, x, z_.data());
    return r;
  }

  std::vector<dssync::SFBLayer> sfb_layers() const { return {sfb_layer(shape_.out, shape_.in, 0)}; }
  std::span<const dssync::FactorView> factors() const { return factors_; }

  void sgd_step(std::span<const float> g, float lr, float momentum) {
    momentum_step(params_, velocity_, g, lr, momentum);
  }

  BatchResult evaluate(std::span<const float> p, const Split& s, int chunk = 250) {
    reserve(chunk);
    return evaluate_in_chunks(s, shape_.in, chunk, [&](const ConstMatrixMap& X, int b) {
      auto z = z_.leftCols(b);
      forward(p.data(), X, z);
      return z;
    });
  }

 private:
  std::size_t weights() const { return std::size_t(shape_.out) * shape_.in; }

  template <class X, class Z>
  void forward(const float* p, const X& x, Z& z) const {
    const ConstMatrixMap w(p, shape_.out, shape_.in);
    const ConstVectorMap b(p + weights(), shape_.out);
    z.noalias() = w * x;
    z.colwise() += b;
  }

  void reserve(int batch) {
    if (z_.cols() < batch) z_.resize(shape_.out, batch);
  }

  SoftmaxShape shape_;
  std::vector<float> params_, velocity_, grad_;
  Matrix z_;  // logits, then probabilities, then (P - Y) / batch; max batch wide
  dssync::FactorView factors_[1] = {};
};

}  // namespace train
