// One time step of the recurrent-BN LSTM cell on CPU, forward and backward (see
// models/sleep_tsr/bn_lstm_kernels.py and bn_lstm.py for the maths).
//
// The matrix products (x W_ih, h W_hh and their gradients) stay in torch; everything between
// them, about 25 small torch ops forward and 35 backward per step, is here a handful of passes
// over cache-sized (B, 4H) tiles: column statistics, then one row pass for the gates and the
// cell, then one for the cell's BN and the output, each on AVX2 lanes. The batch norms use the
// batch statistics of this step (mean and biased variance, as tf.nn.moments) or fixed
// population statistics (eval). Float32 (training) or float64 (exact checks against the autograd loop);
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

using at::vec::Vectorized;

// Every loop below runs one body on 8 (AVX2 float) or 4 (double) lanes at a time and on single
// values for the tail: `lanes(n, body)` calls body(j, tag) with tag a Vectorized<T> or a T, and
// the overloads below load, store and take exp of either.
template <typename T>
inline T ld(const T* p, T) { return *p; }
template <typename T>
inline Vectorized<T> ld(const T* p, Vectorized<T>) { return Vectorized<T>::loadu(p); }
template <typename T>
inline void st(T* p, T v) { *p = v; }
template <typename T>
inline void st(T* p, Vectorized<T> v) { v.store(p); }
template <typename T>
inline T exp_(T v) { return std::exp(v); }
// ATen's polynomial exp (float: <= 20 ulp, i.e. 2e-6 relative, about 3x faster than the 1-ulp
// Sleef exp; double: the 1-ulp one). The gates take it through a sigmoid, where 2e-6 relative
// is below what the BNs' float32 sums round off anyway.
template <typename T>
inline Vectorized<T> exp_(Vectorized<T> v) { return v.exp_u20(); }

template <typename T, typename F>
inline void lanes(int64_t n, F&& body) {
  constexpr int64_t w = Vectorized<T>::size();
  int64_t j = 0;
  for (; j + w <= n; j += w) body(j, Vectorized<T>(T(0)));
  for (; j < n; ++j) body(j, T(0));
}

// sigmoid(v) = 1 / (1 + exp(-v)); tanh(v) = 2 sigmoid(2v) - 1 (one exp, like the sigmoid).
template <typename V, typename T>
inline V sigm(V v, T) { return V(T(1)) / (V(T(1)) + exp_(V(T(0)) - v)); }
template <typename V, typename T>
inline V tanh_(V v, T) { return V(T(2)) / (V(T(1)) + exp_(V(T(-2)) * v)) - V(T(1)); }

template <typename T>
static inline T* ptr(at::Tensor& t, int64_t d) { return t.data_ptr<T>() + d * t.stride(0); }

// Column sums of (row - row 0) and of its square over the rows of a (rows, cols) tile (one
// pass; shifting by a sample keeps E[d^2] - E[d]^2 accurate), turned into mean and biased var.
template <typename T>
static void shifted_moments(const T* x, int64_t rows, int64_t cols, T* s, T* ss, T* mean,
                            T* var) {
  std::fill(s, s + cols, T(0));
  std::fill(ss, ss + cols, T(0));
  for (int64_t b = 1; b < rows; ++b) {
    const T* r = x + b * cols;
    lanes<T>(cols, [&](int64_t j, auto z) {
      using V = decltype(z);
      const V d = ld(r + j, z) - ld(x + j, z);
      st(s + j, ld(s + j, z) + d);
      st(ss + j, ld(ss + j, z) + d * d);
    });
  }
  const T inv = T(1) / static_cast<T>(rows);
  for (int64_t j = 0; j < cols; ++j) {
    const T m = s[j] * inv;
    mean[j] = x[j] + m;
    var[j] = std::max(ss[j] * inv - m * m, T(0));
  }
}

// Forward of one step for every direction d. In place: xw (x W_ih -> x_hat), a (h W_hh ->
// a_hat). Written: act (gates i, f, o after the sigmoid, g after tanh), c, c_hat, tc =
// tanh(BN(c)), h = o * tc, the rstd of each BN and, with batch_stats, the batch mean/var
// (else those are read: the population statistics). Per-direction parameters are (D, 1, n).
template <typename T>
static void forward_impl(at::Tensor xw, at::Tensor a, at::Tensor ih_scale, at::Tensor offset,
                         at::Tensor hh_scale, at::Tensor c_scale, at::Tensor c_offset,
                         at::Tensor c_prev, at::Tensor act, at::Tensor c, at::Tensor c_hat,
                         at::Tensor tc, at::Tensor h, at::Tensor m_x, at::Tensor v_x,
                         at::Tensor m_a, at::Tensor v_a, at::Tensor m_c, at::Tensor v_c,
                         at::Tensor r_x, at::Tensor r_a, at::Tensor r_c, bool batch_stats,
                         double eps) {
  for (auto* t : {&xw, &a, &ih_scale, &offset, &hh_scale, &c_scale, &c_offset, &c_prev, &act, &c,
                  &c_hat, &tc, &h, &m_x, &v_x, &m_a, &v_a, &m_c, &v_c, &r_x, &r_a, &r_c})
    check(*t, "argument", a.scalar_type());
  const int64_t D = a.size(0), B = a.size(1), G = a.size(2), H = G / 4;
  TORCH_CHECK(xw.sizes() == a.sizes() && act.sizes() == a.sizes() && c.size(2) == H &&
                  G == 4 * H && B > 0,
              "bn_lstm_cpu: inconsistent shapes");
  const T e = static_cast<T>(eps);
  at::parallel_for(0, D, 1, [&](int64_t d0, int64_t d1) {
    std::vector<T> s(2 * G), ss(2 * G), kx(G), ka(G), k0(G);
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
        shifted_moments(x, B, G, s.data(), ss.data(), mx, vx);
        shifted_moments(av, B, G, s.data() + G, ss.data() + G, ma, va);
      }
      for (int64_t j = 0; j < G; ++j) {
        rx[j] = T(1) / std::sqrt(vx[j] + e);
        ra[j] = T(1) / std::sqrt(va[j] + e);
      }
      // Gates and cell, row by row; the cell's column sums (shifted by row 0) on the way.
      T *cs = s.data(), *css = ss.data();
      std::fill(cs, cs + H, T(0));
      std::fill(css, css + H, T(0));
      for (int64_t b = 0; b < B; ++b) {
        T *xr = x + b * G, *ar = av + b * G, *z = ac + b * G, *cr = cc + b * H;
        const T* cpr = cp + b * H;
        lanes<T>(G, [&](int64_t j, auto w) {
          using V = decltype(w);
          const V xh = (ld(xr + j, w) - ld(mx + j, w)) * ld(rx + j, w);
          const V ah = (ld(ar + j, w) - ld(ma + j, w)) * ld(ra + j, w);
          st(xr + j, xh);
          st(ar + j, ah);
          st(z + j, ld(off + j, w) + xh * ld(si + j, w) + ah * ld(sh + j, w));
        });
        lanes<T>(3 * H, [&](int64_t j, auto w) { st(z + j, sigm(ld(z + j, w), T(0))); });
        T* zg = z + 3 * H;
        lanes<T>(H, [&](int64_t j, auto w) { st(zg + j, tanh_(ld(zg + j, w), T(0))); });
        lanes<T>(H, [&](int64_t j, auto w) {
          using V = decltype(w);
          const V cv = ld(z + H + j, w) * ld(cpr + j, w) + ld(z + j, w) * ld(z + 3 * H + j, w);
          st(cr + j, cv);
          const V dv = cv - ld(cc + j, w);  // row 0 is already written when b > 0
          st(cs + j, ld(cs + j, w) + dv);
          st(css + j, ld(css + j, w) + dv * dv);
        });
      }
      if (batch_stats) {
        const T inv = T(1) / static_cast<T>(B);
        for (int64_t j = 0; j < H; ++j) {
          const T m = cs[j] * inv;
          mc[j] = cc[j] + m;
          vc[j] = std::max(css[j] * inv - m * m, T(0));
        }
      }
      for (int64_t j = 0; j < H; ++j) rc[j] = T(1) / std::sqrt(vc[j] + e);
      for (int64_t b = 0; b < B; ++b) {
        const T *cr = cc + b * H, *go = ac + b * G + 2 * H;
        T *chr = ch + b * H, *tr = tcv + b * H, *hr = hv + b * H;
        lanes<T>(H, [&](int64_t j, auto w) {
          using V = decltype(w);
          const V chv = (ld(cr + j, w) - ld(mc + j, w)) * ld(rc + j, w);
          st(chr + j, chv);
          const V t = tanh_(chv * ld(sc + j, w) + ld(oc + j, w), T(0));
          st(tr + j, t);
          st(hr + j, ld(go + j, w) * t);
        });
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
                          at::Tensor c_hat, at::Tensor tc, at::Tensor x_hat, at::Tensor a_hat,
                          at::Tensor r_x, at::Tensor r_a, at::Tensor r_c, at::Tensor ih_scale,
                          at::Tensor hh_scale, at::Tensor c_scale, at::Tensor da, at::Tensor dx,
                          at::Tensor g_ih_scale, at::Tensor g_offset, at::Tensor g_hh_scale,
                          at::Tensor g_c_scale, at::Tensor g_c_offset, bool batch_stats) {
  for (auto* t : {&dh, &dc, &act, &c_prev, &c_hat, &tc, &x_hat, &a_hat, &r_x, &r_a, &r_c,
                  &ih_scale, &hh_scale, &c_scale, &da, &dx, &g_ih_scale, &g_offset, &g_hh_scale,
                  &g_c_scale, &g_c_offset})
    check(*t, "argument", act.scalar_type());
  const int64_t D = act.size(0), B = act.size(1), G = act.size(2), H = G / 4;
  TORCH_CHECK(x_hat.sizes() == act.sizes() && a_hat.sizes() == act.sizes() && dh.size(2) == H &&
                  G == 4 * H,
              "bn_lstm_cpu: inconsistent shapes");
  const T inv_b = batch_stats ? T(1) / static_cast<T>(B) : T(0);
  at::parallel_for(0, D, 1, [&](int64_t d0, int64_t d1) {
    std::vector<T> dcb(B * H), s1(H), s2(H), sz(G), szx(G), sza(G), kx(G), ka(G), kc(H);
    for (int64_t d = d0; d < d1; ++d) {
      const T *dhv = ptr<T>(dh, d), *ac = ptr<T>(act, d), *cp = ptr<T>(c_prev, d);
      const T *ch = ptr<T>(c_hat, d), *tcv = ptr<T>(tc, d), *xh = ptr<T>(x_hat, d);
      const T *ah = ptr<T>(a_hat, d), *rx = ptr<T>(r_x, d), *ra = ptr<T>(r_a, d);
      const T *rc = ptr<T>(r_c, d), *si = ptr<T>(ih_scale, d), *sh = ptr<T>(hh_scale, d);
      const T* sc = ptr<T>(c_scale, d);
      T *dcv = ptr<T>(dc, d), *dz = ptr<T>(da, d), *dxv = ptr<T>(dx, d);
      T *gsi = ptr<T>(g_ih_scale, d), *goff = ptr<T>(g_offset, d), *gsh = ptr<T>(g_hh_scale, d);
      T *gsc = ptr<T>(g_c_scale, d), *goc = ptr<T>(g_c_offset, d);
      T *p1 = s1.data(), *p2 = s2.data(), *db0 = dcb.data();
      std::fill(s1.begin(), s1.end(), T(0));
      std::fill(s2.begin(), s2.end(), T(0));
      // Pass 1: through h = o * tanh(u), u = c_scale * c_hat + c_offset.
      for (int64_t b = 0; b < B; ++b) {
        const T *dr = dhv + b * H, *o = ac + b * G + 2 * H, *tr = tcv + b * H, *chr = ch + b * H;
        T *dzo = dz + b * G + 2 * H, *db = db0 + b * H;
        lanes<T>(H, [&](int64_t j, auto w) {
          using V = decltype(w);
          const V dv = ld(dr + j, w), ov = ld(o + j, w), tv = ld(tr + j, w);
          st(dzo + j, dv * tv * (ov - ov * ov));
          const V v = dv * ov * (V(T(1)) - tv * tv);
          st(db + j, v);
          st(p1 + j, ld(p1 + j, w) + v);
          st(p2 + j, ld(p2 + j, w) + v * ld(chr + j, w));
        });
      }
      for (int64_t j = 0; j < H; ++j) {
        goc[j] += s1[j];
        gsc[j] += s2[j];
        kc[j] = sc[j] * rc[j];
        s1[j] *= inv_b;
        s2[j] *= inv_b;
      }
      // Pass 2: BN of c, the cell update and the gate nonlinearities; column sums of dz.
      T *pz = sz.data(), *pzx = szx.data(), *pza = sza.data(), *pkc = kc.data();
      std::fill(sz.begin(), sz.end(), T(0));
      std::fill(szx.begin(), szx.end(), T(0));
      std::fill(sza.begin(), sza.end(), T(0));
      for (int64_t b = 0; b < B; ++b) {
        const T *g = ac + b * G, *db = db0 + b * H, *chr = ch + b * H, *cpr = cp + b * H;
        T *z = dz + b * G, *dcr = dcv + b * H;
        lanes<T>(H, [&](int64_t j, auto w) {
          using V = decltype(w);
          const V gi = ld(g + j, w), gf = ld(g + H + j, w), gg = ld(g + 3 * H + j, w);
          const V dcj = ld(pkc + j, w) * (ld(db + j, w) - ld(p1 + j, w) -
                                          ld(chr + j, w) * ld(p2 + j, w)) +
                        ld(dcr + j, w);
          st(z + j, dcj * gg * (gi - gi * gi));
          st(z + H + j, dcj * ld(cpr + j, w) * (gf - gf * gf));
          st(z + 3 * H + j, dcj * gi * (V(T(1)) - gg * gg));
          st(dcr + j, dcj * gf);
        });
        const T *xr = xh + b * G, *ar = ah + b * G;
        lanes<T>(G, [&](int64_t j, auto w) {
          using V = decltype(w);
          const V zv = ld(z + j, w);
          st(pz + j, ld(pz + j, w) + zv);
          st(pzx + j, ld(pzx + j, w) + zv * ld(xr + j, w));
          st(pza + j, ld(pza + j, w) + zv * ld(ar + j, w));
        });
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
      const T *pkx = kx.data(), *pka = ka.data();
      for (int64_t b = 0; b < B; ++b) {
        const T *xr = xh + b * G, *ar = ah + b * G;
        T *z = dz + b * G, *dxr = dxv + b * G;
        lanes<T>(G, [&](int64_t j, auto w) {
          using V = decltype(w);
          const V zj = ld(z + j, w) - ld(pz + j, w);
          st(dxr + j, ld(pkx + j, w) * (zj - ld(xr + j, w) * ld(pzx + j, w)));
          st(z + j, ld(pka + j, w) * (zj - ld(ar + j, w) * ld(pza + j, w)));
        });
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
