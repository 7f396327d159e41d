// The per-element update rules of the optimizer steps (zkynet/ops/optim_kernels.h), written once
// for the CPU loops (optim.cpp) and the CUDA kernels (cuda/optim.cu). Each rule holds its
// hyper-parameters already rounded to T, as torch's kernels see them; the statements follow
// torch's in-place calls (mul_, add_ with alpha, addcmul_, addcdiv_) one for one.
#pragma once

#include <zkynet/internal/host_device.h>
#include <zkynet/ops/optim_kernels.h>

#include <cmath>

namespace zkynet::kernels::rule {

template <class T>
struct Sgd {
  T lr, wd, mu, damp;
  bool nesterov;

  static Sgd from(const SgdHyper& h) {
    return {static_cast<T>(h.lr), static_cast<T>(h.weight_decay), static_cast<T>(h.momentum),
            static_cast<T>(1 - h.dampening), h.nesterov};
  }
  // buf: null without momentum.
  ZKYNET_HD void operator()(T& w, T g, T* buf, bool first) const {
    T d = g + wd * w;
    if (buf) {
      // torch.optim.SGD: the first step copies d into the buffer, later ones average it in.
      *buf = first ? d : mu * *buf + damp * d;
      d = nesterov ? d + mu * *buf : *buf;
    }
    w -= lr * d;
  }
};

template <class T>
struct Adam {
  T b1, b2, one_minus_b1, one_minus_b2, wd, eps, decay;
  bool decoupled, l2;

  static Adam from(const AdamHyper& h) {
    return {static_cast<T>(h.beta1),
            static_cast<T>(h.beta2),
            static_cast<T>(1 - h.beta1),
            static_cast<T>(1 - h.beta2),
            static_cast<T>(h.weight_decay),
            static_cast<T>(h.eps),
            static_cast<T>(1 - h.lr * h.weight_decay),
            h.decoupled_weight_decay,
            !h.decoupled_weight_decay && h.weight_decay != 0};
  }
  // Per parameter, from its step count in double (as torch computes them in Python):
  // neg_step = -lr / (1 - beta1^t), bc2_sqrt = sqrt(1 - beta2^t).
  static void scalars(const AdamHyper& h, std::int64_t step, T& neg_step, T& bc2_sqrt) {
    const double bias_correction1 = 1 - std::pow(h.beta1, static_cast<double>(step));
    const double bias_correction2 = 1 - std::pow(h.beta2, static_cast<double>(step));
    neg_step = static_cast<T>(-(h.lr / bias_correction1));
    bc2_sqrt = static_cast<T>(std::sqrt(bias_correction2));
  }
  // v_max: null without amsgrad.
  ZKYNET_HD void operator()(T& w, T g, T& m, T& v, T* v_max, T neg_step, T bc2_sqrt) const {
    using std::sqrt;
    if (decoupled) {
      w = w * decay;
    } else if (l2) {
      g = g + wd * w;
    }
    m = m * b1 + one_minus_b1 * g;
    v = v * b2 + one_minus_b2 * g * g;
    T second = v;
    if (v_max) second = *v_max = *v_max < v ? v : *v_max;  // std::max's choice, NaN included
    const T denom = sqrt(second) / bc2_sqrt + eps;
    w = w + neg_step * m / denom;
  }
};

template <class T>
struct Rmsprop {
  T alpha, one_minus_alpha, wd, eps, mu, neg_lr;
  bool l2;

  static Rmsprop from(const RmspropHyper& h) {
    return {static_cast<T>(h.alpha),        static_cast<T>(1 - h.alpha), static_cast<T>(h.weight_decay),
            static_cast<T>(h.eps),          static_cast<T>(h.momentum),  static_cast<T>(-h.lr),
            h.weight_decay != 0};
  }
  // grad_avg: null unless centered; buf: null without momentum.
  ZKYNET_HD void operator()(T& w, T g, T& sq, T* grad_avg, T* buf) const {
    using std::sqrt;
    if (l2) g = g + wd * w;
    sq = sq * alpha + one_minus_alpha * g * g;
    T avg;
    if (grad_avg) {
      *grad_avg = *grad_avg * alpha + one_minus_alpha * g;
      avg = sqrt(sq + T(-1) * *grad_avg * *grad_avg);
    } else {
      avg = sqrt(sq);
    }
    avg = avg + eps;
    if (buf) {
      *buf = *buf * mu + g / avg;
      w = w + neg_lr * *buf;
    } else {
      w = w + neg_lr * g / avg;
    }
  }
};

}  // namespace zkynet::kernels::rule
