// One time step of the recurrent-BN LSTM cell on CPU, forward and backward (see
// models/sleep_tsr/bn_lstm_kernels.py and bn_lstm.py for the maths).
//
// The matrix products (x W_ih, h W_hh and their gradients) stay in torch; everything between
// them, about 25 small torch ops forward and 35 backward per step, is here a handful of passes
// over cache-sized (B, 4H) tiles: column statistics, then one row pass for the gates and the
// cell, then one for the cell's BN and the output, each on AVX2 lanes. The batch norms use the
// batch statistics of this step (mean and biased variance, as tf.nn.moments) or fixed
// population statistics (eval). Float32 (training) or float64 (exact checks against the autograd loop);
// directions and row blocks run on torch's intra-op threads.

#include <ATen/core/Tensor.h>
#include <torch/library.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <algorithm>
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

// The row passes run as D x nblk tasks on torch's intra-op threads (row blocks of one
// direction); column sums are taken per block and added in block order, so results do not
// depend on which thread ran what. One thread: one block per direction.
struct Blocks {
  int64_t D, B, n, rows;
  Blocks(int64_t D_, int64_t B_) : D(D_), B(B_) {
    const int64_t want = (at::get_num_threads() + D - 1) / D;
    n = std::max<int64_t>(1, std::min<int64_t>(want, B / 32));
    rows = (B + n - 1) / n;
  }
  // fn(d, k, r0, r1) for every direction d and block k (rows [r0, r1)).
  template <typename F>
  void run(F&& fn) const {
    at::parallel_for(0, D * n, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t d = t / n, k = t % n;
        fn(d, k, k * rows, std::min(B, (k + 1) * rows));
      }
    });
  }
};

// Adds the rows [r0, r1) of a (rows, cols) tile, shifted by its row 0, into s and their
// squares into ss (shifting by a sample keeps E[d^2] - E[d]^2 accurate).
template <typename T>
static void shifted_sums(const T* x, int64_t r0, int64_t r1, int64_t cols, T* s, T* ss) {
  for (int64_t b = r0; b < r1; ++b) {
    const T* r = x + b * cols;
    lanes<T>(cols, [&](int64_t j, auto z) {
      using V = decltype(z);
      const V d = ld(r + j, z) - ld(x + j, z);
      st(s + j, ld(s + j, z) + d);
      st(ss + j, ld(ss + j, z) + d * d);
    });
  }
}

// Mean and biased variance from the per-block shifted sums part[(k * 2 + {0,1}) * cols + j].
template <typename T>
static void finish_moments(const T* x, const T* part, int64_t nblk, int64_t rows, int64_t cols,
                           T* mean, T* var) {
  const T inv = T(1) / static_cast<T>(rows);
  for (int64_t j = 0; j < cols; ++j) {
    T s = 0, ss = 0;
    for (int64_t k = 0; k < nblk; ++k) {
      s += part[(2 * k) * cols + j];
      ss += part[(2 * k + 1) * cols + j];
    }
    const T m = s * inv;
    mean[j] = x[j] + m;
    var[j] = std::max(ss * inv - m * m, T(0));
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
  const Blocks blk(D, B);
  const int64_t n = blk.n;
  // per (d, block): shifted sums of x and a (4 G values), then of c (2 H)
  std::vector<T> part(D * n * 4 * G, T(0)), cpart(D * n * 2 * H, T(0));
  if (batch_stats) {
    blk.run([&](int64_t d, int64_t k, int64_t r0, int64_t r1) {
      T* p = part.data() + (d * n + k) * 4 * G;
      shifted_sums(ptr<T>(xw, d), r0, r1, G, p, p + G);
      shifted_sums(ptr<T>(a, d), r0, r1, G, p + 2 * G, p + 3 * G);
    });
  }
  for (int64_t d = 0; d < D; ++d) {
    T *mx = ptr<T>(m_x, d), *vx = ptr<T>(v_x, d), *ma = ptr<T>(m_a, d), *va = ptr<T>(v_a, d);
    T *rx = ptr<T>(r_x, d), *ra = ptr<T>(r_a, d);
    if (batch_stats) {
      // blocks' x sums at k * 4G + {0, G}, a sums at + {2G, 3G}: stride 4G between blocks
      std::vector<T> px(n * 2 * G), pa(n * 2 * G);
      for (int64_t k = 0; k < n; ++k) {
        const T* p = part.data() + (d * n + k) * 4 * G;
        std::copy(p, p + 2 * G, px.data() + k * 2 * G);
        std::copy(p + 2 * G, p + 4 * G, pa.data() + k * 2 * G);
      }
      finish_moments(ptr<T>(xw, d), px.data(), n, B, G, mx, vx);
      finish_moments(ptr<T>(a, d), pa.data(), n, B, G, ma, va);
    }
    for (int64_t j = 0; j < G; ++j) {
      rx[j] = T(1) / std::sqrt(vx[j] + e);
      ra[j] = T(1) / std::sqrt(va[j] + e);
    }
  }
  // Gates and cell, row by row.
  blk.run([&](int64_t d, int64_t k, int64_t r0, int64_t r1) {
    T *x = ptr<T>(xw, d), *av = ptr<T>(a, d), *ac = ptr<T>(act, d), *cc = ptr<T>(c, d);
    const T *cp = ptr<T>(c_prev, d), *si = ptr<T>(ih_scale, d), *off = ptr<T>(offset, d);
    const T* sh = ptr<T>(hh_scale, d);
    const T *mx = ptr<T>(m_x, d), *ma = ptr<T>(m_a, d), *rx = ptr<T>(r_x, d);
    const T* ra = ptr<T>(r_a, d);
    for (int64_t b = r0; b < r1; ++b) {
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
        st(cr + j, ld(z + H + j, w) * ld(cpr + j, w) + ld(z + j, w) * ld(zg + j, w));
      });
    }
  });
  if (batch_stats) {
    blk.run([&](int64_t d, int64_t k, int64_t r0, int64_t r1) {
      T* p = cpart.data() + (d * n + k) * 2 * H;
      shifted_sums(ptr<T>(c, d), r0, r1, H, p, p + H);
    });
  }
  for (int64_t d = 0; d < D; ++d) {
    T *mc = ptr<T>(m_c, d), *vc = ptr<T>(v_c, d), *rc = ptr<T>(r_c, d);
    if (batch_stats) finish_moments(ptr<T>(c, d), cpart.data() + d * n * 2 * H, n, B, H, mc, vc);
    for (int64_t j = 0; j < H; ++j) rc[j] = T(1) / std::sqrt(vc[j] + e);
  }
  // BN of the cell, its tanh and the output.
  blk.run([&](int64_t d, int64_t k, int64_t r0, int64_t r1) {
    const T *cc = ptr<T>(c, d), *ac = ptr<T>(act, d), *sc = ptr<T>(c_scale, d);
    const T *oc = ptr<T>(c_offset, d), *mc = ptr<T>(m_c, d), *rc = ptr<T>(r_c, d);
    T *ch = ptr<T>(c_hat, d), *tcv = ptr<T>(tc, d), *hv = ptr<T>(h, d);
    for (int64_t b = r0; b < r1; ++b) {
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
  const Blocks blk(D, B);
  const int64_t n = blk.n;
  std::vector<T> dcb(D * B * H), part1(D * n * 2 * H, T(0)), part2(D * n * 3 * G, T(0));
  // per direction: means over the batch (x inv_b) and the folded scales
  std::vector<T> m1(D * H), m2(D * H), kc(D * H), mz(D * G), mzx(D * G), mza(D * G);
  std::vector<T> kx(D * G), ka(D * G);
  // Pass 1: through h = o * tanh(u), u = c_scale * c_hat + c_offset.
  blk.run([&](int64_t d, int64_t k, int64_t r0, int64_t r1) {
    const T *dhv = ptr<T>(dh, d), *ac = ptr<T>(act, d), *tcv = ptr<T>(tc, d);
    const T* ch = ptr<T>(c_hat, d);
    T *dz = ptr<T>(da, d), *p1 = part1.data() + (d * n + k) * 2 * H, *p2 = p1 + H;
    for (int64_t b = r0; b < r1; ++b) {
      const T *dr = dhv + b * H, *o = ac + b * G + 2 * H, *tr = tcv + b * H, *chr = ch + b * H;
      T *dzo = dz + b * G + 2 * H, *db = dcb.data() + (d * B + b) * H;
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
  });
  for (int64_t d = 0; d < D; ++d) {
    T *gsc = ptr<T>(g_c_scale, d), *goc = ptr<T>(g_c_offset, d);
    const T *sc = ptr<T>(c_scale, d), *rc = ptr<T>(r_c, d);
    for (int64_t j = 0; j < H; ++j) {
      T s1 = 0, s2 = 0;
      for (int64_t k = 0; k < n; ++k) {
        s1 += part1[(d * n + k) * 2 * H + j];
        s2 += part1[(d * n + k) * 2 * H + H + j];
      }
      goc[j] += s1;
      gsc[j] += s2;
      m1[d * H + j] = s1 * inv_b;
      m2[d * H + j] = s2 * inv_b;
      kc[d * H + j] = sc[j] * rc[j];
    }
  }
  // Pass 2: BN of c, the cell update and the gate nonlinearities; column sums of dz.
  blk.run([&](int64_t d, int64_t k, int64_t r0, int64_t r1) {
    const T *ac = ptr<T>(act, d), *ch = ptr<T>(c_hat, d), *cp = ptr<T>(c_prev, d);
    const T *xh = ptr<T>(x_hat, d), *ah = ptr<T>(a_hat, d);
    const T *pkc = kc.data() + d * H, *p1 = m1.data() + d * H, *p2 = m2.data() + d * H;
    T *dz = ptr<T>(da, d), *dcv = ptr<T>(dc, d);
    T* pz = part2.data() + (d * n + k) * 3 * G;
    T *pzx = pz + G, *pza = pz + 2 * G;
    for (int64_t b = r0; b < r1; ++b) {
      const T *g = ac + b * G, *db = dcb.data() + (d * B + b) * H, *chr = ch + b * H;
      const T* cpr = cp + b * H;
      T *z = dz + b * G, *dcr = dcv + b * H;
      lanes<T>(H, [&](int64_t j, auto w) {
        using V = decltype(w);
        const V gi = ld(g + j, w), gf = ld(g + H + j, w), gg = ld(g + 3 * H + j, w);
        const V dcj =
            ld(pkc + j, w) * (ld(db + j, w) - ld(p1 + j, w) - ld(chr + j, w) * ld(p2 + j, w)) +
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
  });
  for (int64_t d = 0; d < D; ++d) {
    T *gsi = ptr<T>(g_ih_scale, d), *goff = ptr<T>(g_offset, d), *gsh = ptr<T>(g_hh_scale, d);
    const T *si = ptr<T>(ih_scale, d), *sh = ptr<T>(hh_scale, d);
    const T *rx = ptr<T>(r_x, d), *ra = ptr<T>(r_a, d);
    for (int64_t j = 0; j < G; ++j) {
      T sz = 0, szx = 0, sza = 0;
      for (int64_t k = 0; k < n; ++k) {
        const T* p = part2.data() + (d * n + k) * 3 * G;
        sz += p[j];
        szx += p[G + j];
        sza += p[2 * G + j];
      }
      goff[j] += sz;
      gsi[j] += szx;
      gsh[j] += sza;
      mz[d * G + j] = sz * inv_b;
      mzx[d * G + j] = szx * inv_b;
      mza[d * G + j] = sza * inv_b;
      kx[d * G + j] = si[j] * rx[j];
      ka[d * G + j] = sh[j] * ra[j];
    }
  }
  // Pass 3: through the two input BNs (dz lives in da and is overwritten last).
  blk.run([&](int64_t d, int64_t k, int64_t r0, int64_t r1) {
    const T *xh = ptr<T>(x_hat, d), *ah = ptr<T>(a_hat, d);
    const T *pz = mz.data() + d * G, *pzx = mzx.data() + d * G, *pza = mza.data() + d * G;
    const T *pkx = kx.data() + d * G, *pka = ka.data() + d * G;
    T *dz = ptr<T>(da, d), *dxv = ptr<T>(dx, d);
    for (int64_t b = r0; b < r1; ++b) {
      const T *xr = xh + b * G, *ar = ah + b * G;
      T *z = dz + b * G, *dxr = dxv + b * G;
      lanes<T>(G, [&](int64_t j, auto w) {
        using V = decltype(w);
        const V zj = ld(z + j, w) - ld(pz + j, w);
        st(dxr + j, ld(pkx + j, w) * (zj - ld(xr + j, w) * ld(pzx + j, w)));
        st(z + j, ld(pka + j, w) * (zj - ld(ar + j, w) * ld(pza + j, w)));
      });
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
