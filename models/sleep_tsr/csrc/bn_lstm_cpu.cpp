// One time step of the recurrent-BN LSTM cell on CPU, forward and backward (see
// models/sleep_tsr/bn_lstm_kernels.py and bn_lstm.py for the maths).
//
// The matrix products (x W_ih, h W_hh and their gradients) stay in torch; everything between
// them, about 25 small torch ops forward and 35 backward per step, is here a handful of passes
// over cache-sized (B, 4H) tiles: column statistics, then one row pass for the gates and the
// cell, then one for the cell's BN and the output. The batch norms use the batch statistics of
// this step (two-pass mean and biased variance, as tf.nn.moments) or fixed population
// statistics (eval). Float32 (training) or float64 (exact checks against the autograd loop);
// directions run on torch's intra-op threads.

#include <ATen/core/Tensor.h>
#include <torch/library.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <cmath>
#include <vector>

static void check(const at::Tensor& t, const char* name, at::ScalarType dtype) {
  TORCH_CHECK(t.device().is_cpu() && (dtype == at::kFloat || dtype == at::kDouble),
              "bn_lstm_cpu: ", name, " must be a float32 or float64 CPU tensor, got ", dtype);
  TORCH_CHECK(t.scalar_type() == dtype, "bn_lstm_cpu: ", name, " must be ", dtype,
              " like the gates, got ", t.scalar_type());
  TORCH_CHECK(t.dim() == 3 && t.stride(2) == 1 && t.stride(1) == t.size(2),
              "bn_lstm_cpu: ", name, " must be (D, rows, cols) with contiguous rows per direction");
}

// Sigmoid of n values in place.
template <typename T>
static inline void sigmoid_inplace(T* p, int64_t n) {
  using Vec = at::vec::Vectorized<T>;
  const Vec one(T(1));
  int64_t k = 0;
  for (; k + Vec::size() <= n; k += Vec::size()) {
    const Vec v = Vec::loadu(p + k);
    (one / (one + v.neg().exp())).store(p + k);
  }
  for (; k < n; ++k) p[k] = T(1) / (T(1) + std::exp(-p[k]));
}

// tanh of n values, from src to dst (may alias).
template <typename T>
static inline void tanh_to(const T* src, T* dst, int64_t n) {
  using Vec = at::vec::Vectorized<T>;
  int64_t k = 0;
  for (; k + Vec::size() <= n; k += Vec::size()) Vec::loadu(src + k).tanh().store(dst + k);
  for (; k < n; ++k) dst[k] = std::tanh(src[k]);
}

// Column mean and biased variance of a (rows, cols) tile, two passes.
template <typename T>
static void column_moments(const T* x, int64_t rows, int64_t cols, T* mean, T* var) {
  std::fill(mean, mean + cols, T(0));
  std::fill(var, var + cols, T(0));
  for (int64_t b = 0; b < rows; ++b) {
    const T* r = x + b * cols;
    for (int64_t j = 0; j < cols; ++j) mean[j] += r[j];
  }
  const T inv = T(1) / static_cast<T>(rows);
  for (int64_t j = 0; j < cols; ++j) mean[j] *= inv;
  for (int64_t b = 0; b < rows; ++b) {
    const T* r = x + b * cols;
    for (int64_t j = 0; j < cols; ++j) {
      const T d = r[j] - mean[j];
      var[j] += d * d;
    }
  }
  for (int64_t j = 0; j < cols; ++j) var[j] *= inv;
}

template <typename T>
static inline T* ptr(at::Tensor& t, int64_t d) { return t.data_ptr<T>() + d * t.stride(0); }

// Forward of one step for every direction d. In place: xw (x W_ih -> x_hat), a (h W_hh ->
// a_hat). Written: act (gates i, f, o after the sigmoid, g after tanh), c, c_hat, tc =
// tanh(BN(c)), h = o * tc, the rstd of each BN and, with batch_stats, the batch mean/var
// (else those are read: the population statistics). Per-direction parameters are (D, 1, n).
template <typename T>
static void forward_impl(at::Tensor xw, at::Tensor a, at::Tensor ih_scale,
                  at::Tensor offset, at::Tensor hh_scale, at::Tensor c_scale,
                  at::Tensor c_offset, at::Tensor c_prev, at::Tensor act,
                  at::Tensor c, at::Tensor c_hat, at::Tensor tc, at::Tensor h,
                  at::Tensor m_x, at::Tensor v_x, at::Tensor m_a, at::Tensor v_a,
                  at::Tensor m_c, at::Tensor v_c, at::Tensor r_x, at::Tensor r_a,
                  at::Tensor r_c, bool batch_stats, double eps) {
  for (auto* t : {&xw, &a, &ih_scale, &offset, &hh_scale, &c_scale, &c_offset, &c_prev, &act, &c,
                  &c_hat, &tc, &h, &m_x, &v_x, &m_a, &v_a, &m_c, &v_c, &r_x, &r_a, &r_c})
    check(*t, "argument", a.scalar_type());
  const int64_t D = a.size(0), B = a.size(1), G = a.size(2), H = G / 4;
  TORCH_CHECK(xw.sizes() == a.sizes() && act.sizes() == a.sizes() && c.size(2) == H,
              "bn_lstm_cpu: inconsistent shapes");
  const T e = static_cast<T>(eps);
  at::parallel_for(0, D, 1, [&](int64_t d0, int64_t d1) {
    for (int64_t d = d0; d < d1; ++d) {
      T *x = ptr<T>(xw, d), *av = ptr<T>(a, d), *ac = ptr<T>(act, d);
      T *cc = ptr<T>(c, d), *ch = ptr<T>(c_hat, d), *tcv = ptr<T>(tc, d), *hv = ptr<T>(h, d);
      const T* cp = ptr<T>(c_prev, d);
      const T *si = ptr<T>(ih_scale, d), *off = ptr<T>(offset, d), *sh = ptr<T>(hh_scale, d);
      const T *sc = ptr<T>(c_scale, d), *oc = ptr<T>(c_offset, d);
      T *mx = ptr<T>(m_x, d), *vx = ptr<T>(v_x, d), *ma = ptr<T>(m_a, d), *va = ptr<T>(v_a, d);
      T *mc = ptr<T>(m_c, d), *vc = ptr<T>(v_c, d);
      T *rx = ptr<T>(r_x, d), *ra = ptr<T>(r_a, d), *rc = ptr<T>(r_c, d);
      if (batch_stats) {
        column_moments(x, B, G, mx, vx);
        column_moments(av, B, G, ma, va);
      }
      for (int64_t j = 0; j < G; ++j) {
        rx[j] = T(1) / std::sqrt(vx[j] + e);
        ra[j] = T(1) / std::sqrt(va[j] + e);
      }
      for (int64_t b = 0; b < B; ++b) {
        T *xr = x + b * G, *ar = av + b * G, *z = ac + b * G;
        for (int64_t j = 0; j < G; ++j) {
          const T xh = (xr[j] - mx[j]) * rx[j];
          const T ah = (ar[j] - ma[j]) * ra[j];
          xr[j] = xh;
          ar[j] = ah;
          z[j] = off[j] + xh * si[j] + ah * sh[j];
        }
        sigmoid_inplace(z, 3 * H);
        tanh_to(z + 3 * H, z + 3 * H, H);
        const T *gi = z, *gf = z + H, *gg = z + 3 * H, *cpr = cp + b * H;
        T* cr = cc + b * H;
        for (int64_t j = 0; j < H; ++j) cr[j] = gf[j] * cpr[j] + gi[j] * gg[j];
      }
      if (batch_stats) column_moments(cc, B, H, mc, vc);
      for (int64_t j = 0; j < H; ++j) rc[j] = T(1) / std::sqrt(vc[j] + e);
      for (int64_t b = 0; b < B; ++b) {
        const T* cr = cc + b * H;
        T *chr = ch + b * H, *tr = tcv + b * H, *hr = hv + b * H;
        const T* go = ac + b * G + 2 * H;
        for (int64_t j = 0; j < H; ++j) {
          chr[j] = (cr[j] - mc[j]) * rc[j];
          tr[j] = chr[j] * sc[j] + oc[j];
        }
        tanh_to(tr, tr, H);
        for (int64_t j = 0; j < H; ++j) hr[j] = go[j] * tr[j];
      }
    }
  });
}

// Backward of one step. dh: dL/dh_t (all of it); dc: in dL/dc_t from step t+1, out dL/dc_{t-1}.
// Written: da, dx (gradients w.r.t. h W_hh and x W_ih before their BN). Accumulated (+=): the
// gradients of ih_scale, offset, hh_scale, c_scale, c_offset. Without batch_stats the BNs
// are affine maps (fixed statistics) and their backward is a scaling.
template <typename T>
static void backward_impl(at::Tensor dh, at::Tensor dc, at::Tensor act, at::Tensor c_prev,
                   at::Tensor c_hat, at::Tensor tc, at::Tensor x_hat,
                   at::Tensor a_hat, at::Tensor r_x, at::Tensor r_a, at::Tensor r_c,
                   at::Tensor ih_scale, at::Tensor hh_scale, at::Tensor c_scale,
                   at::Tensor da, at::Tensor dx, at::Tensor g_ih_scale,
                   at::Tensor g_offset, at::Tensor g_hh_scale, at::Tensor g_c_scale,
                   at::Tensor g_c_offset, bool batch_stats) {
  for (auto* t : {&dh, &dc, &act, &c_prev, &c_hat, &tc, &x_hat, &a_hat, &r_x, &r_a, &r_c,
                  &ih_scale, &hh_scale, &c_scale, &da, &dx, &g_ih_scale, &g_offset, &g_hh_scale,
                  &g_c_scale, &g_c_offset})
    check(*t, "argument", act.scalar_type());
  const int64_t D = act.size(0), B = act.size(1), G = act.size(2), H = G / 4;
  const T inv_b = batch_stats ? T(1) / static_cast<T>(B) : T(0);
  at::parallel_for(0, D, 1, [&](int64_t d0, int64_t d1) {
    std::vector<T> dcb(B * H), s1(H), s2(H), sz(G), szx(G), sza(G), kx(G), ka(G);
    for (int64_t d = d0; d < d1; ++d) {
      const T *dhv = ptr<T>(dh, d), *ac = ptr<T>(act, d), *cp = ptr<T>(c_prev, d);
      const T *ch = ptr<T>(c_hat, d), *tcv = ptr<T>(tc, d), *xh = ptr<T>(x_hat, d);
      const T *ah = ptr<T>(a_hat, d), *rx = ptr<T>(r_x, d), *ra = ptr<T>(r_a, d), *rc = ptr<T>(r_c, d);
      const T *si = ptr<T>(ih_scale, d), *sh = ptr<T>(hh_scale, d), *sc = ptr<T>(c_scale, d);
      T *dcv = ptr<T>(dc, d), *dz = ptr<T>(da, d), *dxv = ptr<T>(dx, d);
      T *gsi = ptr<T>(g_ih_scale, d), *goff = ptr<T>(g_offset, d), *gsh = ptr<T>(g_hh_scale, d);
      T *gsc = ptr<T>(g_c_scale, d), *goc = ptr<T>(g_c_offset, d);
      std::fill(s1.begin(), s1.end(), T(0));
      std::fill(s2.begin(), s2.end(), T(0));
      // Pass 1: through h = o * tanh(u), u = c_scale * c_hat + c_offset.
      for (int64_t b = 0; b < B; ++b) {
        const T *dr = dhv + b * H, *o = ac + b * G + 2 * H, *tr = tcv + b * H;
        const T* chr = ch + b * H;
        T *dzo = dz + b * G + 2 * H, *db = dcb.data() + b * H;
        for (int64_t j = 0; j < H; ++j) {
          dzo[j] = dr[j] * tr[j] * (o[j] - o[j] * o[j]);
          const T v = dr[j] * o[j] * (T(1) - tr[j] * tr[j]);
          db[j] = v;
          s1[j] += v;
          s2[j] += v * chr[j];
        }
      }
      for (int64_t j = 0; j < H; ++j) {
        goc[j] += s1[j];
        gsc[j] += s2[j];
      }
      // Pass 2: BN of c, the cell update and the gate nonlinearities.
      std::fill(sz.begin(), sz.end(), T(0));
      std::fill(szx.begin(), szx.end(), T(0));
      std::fill(sza.begin(), sza.end(), T(0));
      for (int64_t b = 0; b < B; ++b) {
        const T *g = ac + b * G, *db = dcb.data() + b * H, *chr = ch + b * H;
        const T* cpr = cp + b * H;
        T *z = dz + b * G, *dcr = dcv + b * H;
        for (int64_t j = 0; j < H; ++j) {
          const T gi = g[j], gf = g[H + j], gg = g[3 * H + j];
          const T dcj =
              sc[j] * rc[j] * (db[j] - inv_b * (s1[j] + chr[j] * s2[j])) + dcr[j];
          z[j] = dcj * gg * (gi - gi * gi);
          z[H + j] = dcj * cpr[j] * (gf - gf * gf);
          z[3 * H + j] = dcj * gi * (T(1) - gg * gg);
          dcr[j] = dcj * gf;
        }
        const T *xr = xh + b * G, *ar = ah + b * G;
        for (int64_t j = 0; j < G; ++j) {
          sz[j] += z[j];
          szx[j] += z[j] * xr[j];
          sza[j] += z[j] * ar[j];
        }
      }
      for (int64_t j = 0; j < G; ++j) {
        goff[j] += sz[j];
        gsi[j] += szx[j];
        gsh[j] += sza[j];
        kx[j] = si[j] * rx[j];
        ka[j] = sh[j] * ra[j];
        sz[j] *= inv_b;
        szx[j] *= inv_b;
        sza[j] *= inv_b;
      }
      // Pass 3: through the two input BNs (dz lives in da and is overwritten last).
      for (int64_t b = 0; b < B; ++b) {
        const T *xr = xh + b * G, *ar = ah + b * G;
        T *z = dz + b * G, *dxr = dxv + b * G;
        for (int64_t j = 0; j < G; ++j) {
          const T zj = z[j] - sz[j];
          dxr[j] = kx[j] * (zj - xr[j] * szx[j]);
          z[j] = ka[j] * (zj - ar[j] * sza[j]);
        }
      }
    }
  });
}

void forward_step(at::Tensor xw, at::Tensor a, at::Tensor ih_scale,
                  at::Tensor offset, at::Tensor hh_scale, at::Tensor c_scale,
                  at::Tensor c_offset, at::Tensor c_prev, at::Tensor act,
                  at::Tensor c, at::Tensor c_hat, at::Tensor tc, at::Tensor h,
                  at::Tensor m_x, at::Tensor v_x, at::Tensor m_a, at::Tensor v_a,
                  at::Tensor m_c, at::Tensor v_c, at::Tensor r_x, at::Tensor r_a,
                  at::Tensor r_c, bool batch_stats, double eps) {
  if (a.scalar_type() == at::kDouble)
    forward_impl<double>(xw, a, ih_scale, offset, hh_scale, c_scale, c_offset, c_prev, act, c,
                         c_hat, tc, h, m_x, v_x, m_a, v_a, m_c, v_c, r_x, r_a, r_c, batch_stats,
                         eps);
  else
    forward_impl<float>(xw, a, ih_scale, offset, hh_scale, c_scale, c_offset, c_prev, act, c,
                        c_hat, tc, h, m_x, v_x, m_a, v_a, m_c, v_c, r_x, r_a, r_c, batch_stats,
                        eps);
}

void backward_step(at::Tensor dh, at::Tensor dc, at::Tensor act, at::Tensor c_prev,
                   at::Tensor c_hat, at::Tensor tc, at::Tensor x_hat,
                   at::Tensor a_hat, at::Tensor r_x, at::Tensor r_a, at::Tensor r_c,
                   at::Tensor ih_scale, at::Tensor hh_scale, at::Tensor c_scale,
                   at::Tensor da, at::Tensor dx, at::Tensor g_ih_scale,
                   at::Tensor g_offset, at::Tensor g_hh_scale, at::Tensor g_c_scale,
                   at::Tensor g_c_offset, bool batch_stats) {
  if (act.scalar_type() == at::kDouble)
    backward_impl<double>(dh, dc, act, c_prev, c_hat, tc, x_hat, a_hat, r_x, r_a, r_c, ih_scale,
                          hh_scale, c_scale, da, dx, g_ih_scale, g_offset, g_hh_scale, g_c_scale,
                          g_c_offset, batch_stats);
  else
    backward_impl<float>(dh, dc, act, c_prev, c_hat, tc, x_hat, a_hat, r_x, r_a, r_c, ih_scale,
                         hh_scale, c_scale, da, dx, g_ih_scale, g_offset, g_hh_scale, g_c_scale,
                         g_c_offset, batch_stats);
}

// Registered as torch.ops.sleep_tsr_bn_lstm.*: these light headers (no pybind11, no
// torch/extension.h) compile in about a sixth of the time, which CI pays once per run.
TORCH_LIBRARY(sleep_tsr_bn_lstm, m) {
  m.def("forward_step", &forward_step);
  m.def("backward_step", &backward_step);
}
