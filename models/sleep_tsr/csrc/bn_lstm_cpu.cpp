// One time step of the recurrent-BN LSTM cell on CPU, forward and backward (see
// models/sleep_tsr/bn_lstm_kernels.py and bn_lstm.py for the maths).
//
// The matrix products (x W_ih, h W_hh and their gradients) stay in torch; everything between
// them, about 25 small torch ops forward and 35 backward per step, is here a handful of passes
// over cache-sized (B, 4H) tiles: column statistics, then one row pass for the gates and the
// cell, then one for the cell's BN and the output. The batch norms use the batch statistics of
// this step (two-pass mean and biased variance, as tf.nn.moments) or fixed population
// statistics (eval). Float32 only; directions run on torch's intra-op threads.

#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <cmath>
#include <vector>

using Vec = at::vec::Vectorized<float>;
constexpr int64_t W = Vec::size();

static void check(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat,
              "bn_lstm_cpu: ", name, " must be a float32 CPU tensor, got ", t.scalar_type());
  TORCH_CHECK(t.dim() == 3 && t.stride(2) == 1 && t.stride(1) == t.size(2),
              "bn_lstm_cpu: ", name, " must be (D, rows, cols) with contiguous rows per direction");
}

// Sigmoid of n floats in place.
static inline void sigmoid_inplace(float* p, int64_t n) {
  const Vec one(1.f);
  int64_t k = 0;
  for (; k + W <= n; k += W) {
    const Vec v = Vec::loadu(p + k);
    (one / (one + v.neg().exp())).store(p + k);
  }
  for (; k < n; ++k) p[k] = 1.f / (1.f + std::exp(-p[k]));
}

// tanh of n floats, from src to dst (may alias).
static inline void tanh_to(const float* src, float* dst, int64_t n) {
  int64_t k = 0;
  for (; k + W <= n; k += W) Vec::loadu(src + k).tanh().store(dst + k);
  for (; k < n; ++k) dst[k] = std::tanh(src[k]);
}

// Column mean and biased variance of a (rows, cols) tile, two passes.
static void column_moments(const float* x, int64_t rows, int64_t cols, float* mean, float* var) {
  std::fill(mean, mean + cols, 0.f);
  std::fill(var, var + cols, 0.f);
  for (int64_t b = 0; b < rows; ++b) {
    const float* r = x + b * cols;
    for (int64_t j = 0; j < cols; ++j) mean[j] += r[j];
  }
  const float inv = 1.f / static_cast<float>(rows);
  for (int64_t j = 0; j < cols; ++j) mean[j] *= inv;
  for (int64_t b = 0; b < rows; ++b) {
    const float* r = x + b * cols;
    for (int64_t j = 0; j < cols; ++j) {
      const float d = r[j] - mean[j];
      var[j] += d * d;
    }
  }
  for (int64_t j = 0; j < cols; ++j) var[j] *= inv;
}

static inline float* ptr(torch::Tensor& t, int64_t d) { return t.data_ptr<float>() + d * t.stride(0); }

// Forward of one step for every direction d. In place: xw (x W_ih -> x_hat), a (h W_hh ->
// a_hat). Written: act (gates i, f, o after the sigmoid, g after tanh), c, c_hat, tc =
// tanh(BN(c)), h = o * tc, the rstd of each BN and, with batch_stats, the batch mean/var
// (else those are read: the population statistics). Per-direction parameters are (D, 1, n).
void forward_step(torch::Tensor xw, torch::Tensor a, torch::Tensor ih_scale,
                  torch::Tensor offset, torch::Tensor hh_scale, torch::Tensor c_scale,
                  torch::Tensor c_offset, torch::Tensor c_prev, torch::Tensor act,
                  torch::Tensor c, torch::Tensor c_hat, torch::Tensor tc, torch::Tensor h,
                  torch::Tensor m_x, torch::Tensor v_x, torch::Tensor m_a, torch::Tensor v_a,
                  torch::Tensor m_c, torch::Tensor v_c, torch::Tensor r_x, torch::Tensor r_a,
                  torch::Tensor r_c, bool batch_stats, double eps) {
  for (auto* t : {&xw, &a, &ih_scale, &offset, &hh_scale, &c_scale, &c_offset, &c_prev, &act, &c,
                  &c_hat, &tc, &h, &m_x, &v_x, &m_a, &v_a, &m_c, &v_c, &r_x, &r_a, &r_c})
    check(*t, "argument");
  const int64_t D = a.size(0), B = a.size(1), G = a.size(2), H = G / 4;
  TORCH_CHECK(xw.sizes() == a.sizes() && act.sizes() == a.sizes() && c.size(2) == H,
              "bn_lstm_cpu: inconsistent shapes");
  const float e = static_cast<float>(eps);
  at::parallel_for(0, D, 1, [&](int64_t d0, int64_t d1) {
    for (int64_t d = d0; d < d1; ++d) {
      float *x = ptr(xw, d), *av = ptr(a, d), *ac = ptr(act, d);
      float *cc = ptr(c, d), *ch = ptr(c_hat, d), *tcv = ptr(tc, d), *hv = ptr(h, d);
      const float* cp = ptr(c_prev, d);
      const float *si = ptr(ih_scale, d), *off = ptr(offset, d), *sh = ptr(hh_scale, d);
      const float *sc = ptr(c_scale, d), *oc = ptr(c_offset, d);
      float *mx = ptr(m_x, d), *vx = ptr(v_x, d), *ma = ptr(m_a, d), *va = ptr(v_a, d);
      float *mc = ptr(m_c, d), *vc = ptr(v_c, d);
      float *rx = ptr(r_x, d), *ra = ptr(r_a, d), *rc = ptr(r_c, d);
      if (batch_stats) {
        column_moments(x, B, G, mx, vx);
        column_moments(av, B, G, ma, va);
      }
      for (int64_t j = 0; j < G; ++j) {
        rx[j] = 1.f / std::sqrt(vx[j] + e);
        ra[j] = 1.f / std::sqrt(va[j] + e);
      }
      for (int64_t b = 0; b < B; ++b) {
        float *xr = x + b * G, *ar = av + b * G, *z = ac + b * G;
        for (int64_t j = 0; j < G; ++j) {
          const float xh = (xr[j] - mx[j]) * rx[j];
          const float ah = (ar[j] - ma[j]) * ra[j];
          xr[j] = xh;
          ar[j] = ah;
          z[j] = off[j] + xh * si[j] + ah * sh[j];
        }
        sigmoid_inplace(z, 3 * H);
        tanh_to(z + 3 * H, z + 3 * H, H);
        const float *gi = z, *gf = z + H, *gg = z + 3 * H, *cpr = cp + b * H;
        float* cr = cc + b * H;
        for (int64_t j = 0; j < H; ++j) cr[j] = gf[j] * cpr[j] + gi[j] * gg[j];
      }
      if (batch_stats) column_moments(cc, B, H, mc, vc);
      for (int64_t j = 0; j < H; ++j) rc[j] = 1.f / std::sqrt(vc[j] + e);
      for (int64_t b = 0; b < B; ++b) {
        const float* cr = cc + b * H;
        float *chr = ch + b * H, *tr = tcv + b * H, *hr = hv + b * H;
        const float* go = ac + b * G + 2 * H;
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
void backward_step(torch::Tensor dh, torch::Tensor dc, torch::Tensor act, torch::Tensor c_prev,
                   torch::Tensor c_hat, torch::Tensor tc, torch::Tensor x_hat,
                   torch::Tensor a_hat, torch::Tensor r_x, torch::Tensor r_a, torch::Tensor r_c,
                   torch::Tensor ih_scale, torch::Tensor hh_scale, torch::Tensor c_scale,
                   torch::Tensor da, torch::Tensor dx, torch::Tensor g_ih_scale,
                   torch::Tensor g_offset, torch::Tensor g_hh_scale, torch::Tensor g_c_scale,
                   torch::Tensor g_c_offset, bool batch_stats) {
  for (auto* t : {&dh, &dc, &act, &c_prev, &c_hat, &tc, &x_hat, &a_hat, &r_x, &r_a, &r_c,
                  &ih_scale, &hh_scale, &c_scale, &da, &dx, &g_ih_scale, &g_offset, &g_hh_scale,
                  &g_c_scale, &g_c_offset})
    check(*t, "argument");
  const int64_t D = act.size(0), B = act.size(1), G = act.size(2), H = G / 4;
  const float inv_b = batch_stats ? 1.f / static_cast<float>(B) : 0.f;
  at::parallel_for(0, D, 1, [&](int64_t d0, int64_t d1) {
    std::vector<float> dcb(B * H), s1(H), s2(H), sz(G), szx(G), sza(G), kx(G), ka(G);
    for (int64_t d = d0; d < d1; ++d) {
      const float *dhv = ptr(dh, d), *ac = ptr(act, d), *cp = ptr(c_prev, d);
      const float *ch = ptr(c_hat, d), *tcv = ptr(tc, d), *xh = ptr(x_hat, d);
      const float *ah = ptr(a_hat, d), *rx = ptr(r_x, d), *ra = ptr(r_a, d), *rc = ptr(r_c, d);
      const float *si = ptr(ih_scale, d), *sh = ptr(hh_scale, d), *sc = ptr(c_scale, d);
      float *dcv = ptr(dc, d), *dz = ptr(da, d), *dxv = ptr(dx, d);
      float *gsi = ptr(g_ih_scale, d), *goff = ptr(g_offset, d), *gsh = ptr(g_hh_scale, d);
      float *gsc = ptr(g_c_scale, d), *goc = ptr(g_c_offset, d);
      std::fill(s1.begin(), s1.end(), 0.f);
      std::fill(s2.begin(), s2.end(), 0.f);
      // Pass 1: through h = o * tanh(u), u = c_scale * c_hat + c_offset.
      for (int64_t b = 0; b < B; ++b) {
        const float *dr = dhv + b * H, *o = ac + b * G + 2 * H, *tr = tcv + b * H;
        const float* chr = ch + b * H;
        float *dzo = dz + b * G + 2 * H, *db = dcb.data() + b * H;
        for (int64_t j = 0; j < H; ++j) {
          dzo[j] = dr[j] * tr[j] * (o[j] - o[j] * o[j]);
          const float v = dr[j] * o[j] * (1.f - tr[j] * tr[j]);
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
      std::fill(sz.begin(), sz.end(), 0.f);
      std::fill(szx.begin(), szx.end(), 0.f);
      std::fill(sza.begin(), sza.end(), 0.f);
      for (int64_t b = 0; b < B; ++b) {
        const float *g = ac + b * G, *db = dcb.data() + b * H, *chr = ch + b * H;
        const float* cpr = cp + b * H;
        float *z = dz + b * G, *dcr = dcv + b * H;
        for (int64_t j = 0; j < H; ++j) {
          const float gi = g[j], gf = g[H + j], gg = g[3 * H + j];
          const float dcj =
              sc[j] * rc[j] * (db[j] - inv_b * (s1[j] + chr[j] * s2[j])) + dcr[j];
          z[j] = dcj * gg * (gi - gi * gi);
          z[H + j] = dcj * cpr[j] * (gf - gf * gf);
          z[3 * H + j] = dcj * gi * (1.f - gg * gg);
          dcr[j] = dcj * gf;
        }
        const float *xr = xh + b * G, *ar = ah + b * G;
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
        const float *xr = xh + b * G, *ar = ah + b * G;
        float *z = dz + b * G, *dxr = dxv + b * G;
        for (int64_t j = 0; j < G; ++j) {
          const float zj = z[j] - sz[j];
          dxr[j] = kx[j] * (zj - xr[j] * szx[j]);
          z[j] = ka[j] * (zj - ar[j] * sza[j]);
        }
      }
    }
  });
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward_step", &forward_step, "recurrent-BN LSTM cell, one step forward");
  m.def("backward_step", &backward_step, "recurrent-BN LSTM cell, one step backward");
}
