// Fused element-wise stages of the GMM layer on CPU (see models/deep_gmm/cpu_kernels.py).
//
// The layer's three matrix products run in torch (at::mm_out, MKL); around them, each stage below
// makes one pass over a block of states where the eager torch ops make three to six, and uses
// ATen's vectorised exp_u20 (a degree-5 polynomial instead of SLEEF's u10 exp: ~1e-6 relative
// error, far inside what the float64 tests allow; it returns 0, not a subnormal, below
// log(FLT_MIN)) and log, 8 floats wide (AVX2), or 16 when built for AVX-512
// (cpu_kernels.AVX512). forward_blocks / backward_blocks run the whole block loops, so no
// Python runs between blocks. All tensors are float32. Means enter relative to the expansion
// centre c (the batch mean of x, see gmm_function.py), which keeps the expanded Mahalanobis form
// exact far from 0. A block holds states [s0, s0 + n) component-major: row (i, j) of a block is
// component i of state s0 + j; parameters are (S, g, d) contiguous.
// The loops run on torch's intra-op threads (at::parallel_for; inline when there is one thread).

#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <vector>
#include <cstdint>
#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
#include <immintrin.h>
#define GMM_STREAM_STORES 1
#endif

using Vec = at::vec::Vectorized<float>;
constexpr int64_t W = Vec::size();
#if defined(GMM_STREAM_STORES)
// A store that bypasses the cache (the destination must be aligned to a whole vector).
static inline void stream_store(float* p, const Vec& v) {
#if defined(CPU_CAPABILITY_AVX512)
  _mm512_stream_ps(p, v);
#else
  _mm256_stream_ps(p, v);
#endif
}
#endif
// Horizontal sum / max of one vector's lanes (ATen's vec_reduce_all differs in signature
// between its AVX2 and AVX-512 builds; this runs once per parameter row, so plain code will do).
static inline float lane_sum(const Vec& v) {
  float lanes[W];
  v.store(lanes);
  float s = 0.f;
  for (int64_t k = 0; k < W; ++k) s += lanes[k];
  return s;
}
static inline float lane_max(const Vec& v) {
  float lanes[W];
  v.store(lanes);
  float m = lanes[0];
  for (int64_t k = 1; k < W; ++k) m = lanes[k] > m ? lanes[k] : m;
  return m;
}
// Up to this many components per state, densities() keeps a state's components in registers.
constexpr int64_t kMaxRegComps = 8;

// The loops index raw pointers: refuse anything they would misread.
static void check(const torch::Tensor& t, const char* name, bool contiguous = true) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat,
              "gmm_cpu_kernels: ", name, " must be a float32 CPU tensor, got ", t.scalar_type());
  TORCH_CHECK(contiguous ? t.is_contiguous() : t.stride(-1) == 1,
              "gmm_cpu_kernels: ", name, contiguous ? " must be contiguous" : " rows must be contiguous");
}

// One parameter row's weights: with m = mu - c, mp <- m * prec and pr <- prec = exp(-max(lv,
// log_floor)) (cap = -log_floor). Returns the sums the constant needs: sum of -max(lv, floor),
// sum of m^2 prec, and max of -lv (above cap means the floor clamped).
struct RowSums {
  float nl, mm, mx;
};
static inline RowSums weights_row(const float* m, const float* l, const float* cen, int64_t d,
                                  float cap, float* mp, float* pr) {
  const Vec capv(cap);
  Vec acc_nl(0.f), acc_mm(0.f), acc_mx(-3.0e38f);
  int64_t k = 0;
  for (; k + W <= d; k += W) {
    Vec nl = Vec(0.f) - Vec::loadu(l + k);
    acc_mx = at::vec::maximum(acc_mx, nl);
    nl = at::vec::minimum(nl, capv);
    const Vec p = nl.exp_u20();
    const Vec mv = Vec::loadu(m + k) - Vec::loadu(cen + k);
    const Vec a = mv * p;
    p.store(pr + k);
    a.store(mp + k);
    acc_nl = acc_nl + nl;
    acc_mm = at::vec::fmadd(a, mv, acc_mm);
  }
  RowSums sums{lane_sum(acc_nl), lane_sum(acc_mm), lane_max(acc_mx)};
  for (; k < d; ++k) {
    float nl = -l[k];
    sums.mx = nl > sums.mx ? nl : sums.mx;
    nl = nl < cap ? nl : cap;
    const float p = std::exp(nl);
    const float mc = m[k] - cen[k];
    pr[k] = p;
    mp[k] = mc * p;
    sums.nl += nl;
    sums.mm += mp[k] * mc;
  }
  return sums;
}

// With m = mu - c: w_block (g, n, 2d) <- [m * prec, prec] with prec = exp(-max(lv, log_floor));
// const_out (g, n) <- log w - (m^2 prec + log|Sigma| + d log 2 pi) / 2. Returns whether any
// variance was floored.
bool prepare(torch::Tensor mu3, torch::Tensor lv3, torch::Tensor log_w, torch::Tensor w_block,
             torch::Tensor const_out, torch::Tensor centre, int64_t s0, int64_t n,
             double log_floor) {
  check(mu3, "mu"), check(lv3, "log_var"), check(w_block, "w_block"), check(const_out, "const");
  check(centre, "centre");
  TORCH_CHECK(centre.numel() == mu3.size(2), "gmm_cpu_kernels: centre must have d elements");
  TORCH_CHECK(log_w.scalar_type() == at::kFloat, "gmm_cpu_kernels: log_w must be float32");
  const int64_t g = mu3.size(1), d = mu3.size(2);
  const float* mu = mu3.data_ptr<float>();
  const float* lv = lv3.data_ptr<float>();
  float* w = w_block.data_ptr<float>();
  float* c = const_out.data_ptr<float>();
  const float* lw = log_w.data_ptr<float>();
  const float* cen = centre.data_ptr<float>();
  const int64_t lw0 = log_w.stride(0), lw1 = log_w.stride(1);
  const float cap = static_cast<float>(-log_floor);
  const float c0 = static_cast<float>(d * std::log(2.0 * M_PI));
  std::atomic<bool> clamped{false};
  at::parallel_for(0, g * n, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      // rows in the parameters' memory order: mu and log_var are read as one stream each (row
      // by component first was a 5-row stride, 1.6x slower at the paper's size on AMD EPYC)
      const int64_t j = r / g, i = r % g;
      const int64_t row = (s0 + j) * g + i;
      float* mp = w + (i * n + j) * 2 * d;
      const RowSums sums = weights_row(mu + row * d, lv + row * d, cen, d, cap, mp, mp + d);
      if (sums.mx > cap) clamped.store(true, std::memory_order_relaxed);
      c[i * n + j] = -0.5f * (sums.mm - sums.nl + c0) + lw[i * lw0 + (s0 + j) * lw1];
    }
  });
  return clamped.load();
}

// comp (B, g, n) <- exp(comp + const - peak) with peak the max over g of comp + const (const is
// (g, n)); total[:, s0:s0+n] <- sum over g; out[:, s0:s0+n] <- -log p(x|s) = -(log total + peak).
void densities(torch::Tensor comp, torch::Tensor const_in, torch::Tensor total, torch::Tensor out,
               int64_t s0) {
  check(comp, "comp"), check(const_in, "const"), check(total, "total", false);
  check(out, "out", false);
  const int64_t B = comp.size(0), g = comp.size(1), n = comp.size(2);
  float* cp = comp.data_ptr<float>();
  const float* cst = const_in.data_ptr<float>();
  float* tp = total.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const int64_t ts = total.stride(0), os = out.stride(0);
  at::parallel_for(0, B, 8, [&](int64_t b_begin, int64_t b_end) {
    for (int64_t b = b_begin; b < b_end; ++b) {
      float* cb = cp + b * g * n;
      float* tr = tp + b * ts + s0;
      float* orow = op + b * os + s0;
      int64_t j = 0;
      if (g <= kMaxRegComps) {  // the g components of W states in registers: one load, one store
        for (; j + W <= n; j += W) {
          Vec v[kMaxRegComps];
          Vec pk(-std::numeric_limits<float>::infinity());
          for (int64_t i = 0; i < g; ++i) {
            v[i] = Vec::loadu(cb + i * n + j) + Vec::loadu(cst + i * n + j);
            pk = at::vec::maximum(pk, v[i]);
          }
          Vec tt(0.f);
          for (int64_t i = 0; i < g; ++i) {
            const Vec e = (v[i] - pk).exp_u20();
            e.store(cb + i * n + j);
            tt = tt + e;
          }
          tt.store(tr + j);
          (Vec(0.f) - (tt.log() + pk)).store(orow + j);
        }
      }
      for (; j + W <= n; j += W) {
        for (int64_t i = 0; i < g; ++i)
          (Vec::loadu(cb + i * n + j) + Vec::loadu(cst + i * n + j)).store(cb + i * n + j);
        Vec pk = Vec::loadu(cb + j);
        for (int64_t i = 1; i < g; ++i) pk = at::vec::maximum(pk, Vec::loadu(cb + i * n + j));
        Vec tt(0.f);
        for (int64_t i = 0; i < g; ++i) {
          const Vec e = (Vec::loadu(cb + i * n + j) - pk).exp_u20();
          e.store(cb + i * n + j);
          tt = tt + e;
        }
        tt.store(tr + j);
        (Vec(0.f) - (tt.log() + pk)).store(orow + j);
      }
      for (; j < n; ++j) {
        for (int64_t i = 0; i < g; ++i) cb[i * n + j] += cst[i * n + j];
        float pk = cb[j];
        for (int64_t i = 1; i < g; ++i) pk = cb[i * n + j] > pk ? cb[i * n + j] : pk;
        float tt = 0.f;
        for (int64_t i = 0; i < g; ++i) {
          const float e = std::exp(cb[i * n + j] - pk);
          cb[i * n + j] = e;
          tt += e;
        }
        tr[j] = tt;
        orow[j] = -(std::log(tt) + pk);
      }
    }
  });
}

// slab (B, g, n) <- slab * scale[:, s0:s0+n] (the responsibilities r), subnormal values flushed to
// zero; r_sum (g, n) <- sum over B. r feeds two matrix products, and subnormal inputs slow a GEMM
// down by up to 20x on some CPUs (about 3 % of r are subnormal at the paper's init), so they are
// zeroed here whatever the global flush-to-zero mode.
void responsibilities(torch::Tensor slab, torch::Tensor scale, torch::Tensor r_sum, int64_t s0) {
  check(slab, "slab"), check(scale, "scale", false), check(r_sum, "r_sum");
  const int64_t B = slab.size(0), g = slab.size(1), n = slab.size(2);
  float* sp = slab.data_ptr<float>();
  const float* sc = scale.data_ptr<float>();
  float* rs = r_sum.data_ptr<float>();
  const int64_t ss = scale.stride(0);
  std::fill(rs, rs + g * n, 0.f);
  const float tiny = std::numeric_limits<float>::min();
  const Vec tinyv(tiny), zero(0.f);
  // Threads own column ranges [j0, j1) of every row, so their sums over b never collide.
  at::parallel_for(0, n, 4 * W, [&](int64_t j0, int64_t j1) {
    for (int64_t b = 0; b < B; ++b) {
      const float* scb = sc + b * ss + s0;
      for (int64_t i = 0; i < g; ++i) {
        float* row = sp + (b * g + i) * n;
        float* acc = rs + i * n;
        int64_t j = j0;
        for (; j + W <= j1; j += W) {
          Vec v = Vec::loadu(row + j) * Vec::loadu(scb + j);
          v = Vec::blendv(v, zero, v.abs() < tinyv);
          v.store(row + j);
          (Vec::loadu(acc + j) + v).store(acc + j);
        }
        for (; j < j1; ++j) {
          const float v = row[j] * scb[j];
          row[j] = std::fabs(v) < tiny ? 0.f : v;
          acc[j] += row[j];
        }
      }
    }
  });
}

// One parameter row's Eq. 2 gradients from a = -r^T x and q = r^T x^2 (relative to the centre),
// the responsibility sum R and prec: see grads(). ``om`` / ``ol`` may be null (frozen).
static inline void grads_row(const float* a, const float* q, const float* pr, const float* m,
                             const float* l, const float* cen, int64_t d, float R, float lf,
                             bool mask, float* om, float* ol, bool stream) {
  const Vec Rv(R), hR(0.5f * R), half(0.5f), lfv(lf), zero(0.f);
  int64_t k = 0;
  for (; k + W <= d; k += W) {
    const Vec av = Vec::loadu(a + k), pv = Vec::loadu(pr + k);
    const Vec mv = Vec::loadu(m + k) - Vec::loadu(cen + k);
    const Vec t = at::vec::fmadd(Rv, mv, av);  // R mu - r^T x
    Vec vm, vl;
    if (om) vm = t * pv;
    if (ol) {
      const Vec s = at::vec::fmadd(mv, av + t, Vec::loadu(q + k));  // sum r (x - mu)^2
      vl = hR - half * s * pv;
      if (mask) vl = Vec::blendv(vl, zero, Vec::loadu(l + k) < lfv);
    }
#if defined(GMM_STREAM_STORES)
    if (stream) {
      if (om) stream_store(om + k, vm);
      if (ol) stream_store(ol + k, vl);
      continue;
    }
#endif
    if (om) vm.store(om + k);
    if (ol) vl.store(ol + k);
  }
  for (; k < d; ++k) {
    const float mc = m[k] - cen[k];
    const float t = a[k] + R * mc;
    if (om) om[k] = t * pr[k];
    if (ol) {
      const float s = q[k] + mc * (a[k] + t);
      const float v = 0.5f * R - 0.5f * s * pr[k];
      ol[k] = (mask && l[k] < lf) ? 0.f : v;
    }
  }
}

// From g_block (g, n, 2d) = [-r^T x, r^T x^2] and the responsibility sums r_b (g, n), writes the
// Eq. 2 gradients of the block's states: grad_mu = prec (R mu - r^T x) and grad_lv = R / 2 -
// prec / 2 sum_b r (x - mu)^2 (zero where the variance is floored, if ``mask``), with x and mu
// both taken relative to the centre c. Rows run in the parameters' memory order, so mu and the
// gradients stream. Either output may be empty (frozen parameters). With ``write_weights`` the
// block's weights [m * prec, prec] are computed here, row by row, into w_block (as prepare()
// would, without the constants) instead of read from it: the backward then reads each
// parameter row once for both, not once in prepare() and again here.
void grads(torch::Tensor gblock, torch::Tensor mu3, torch::Tensor lv3, torch::Tensor w_block,
           torch::Tensor r_b, torch::Tensor gmu3, torch::Tensor glv3, torch::Tensor centre,
           int64_t s0, int64_t n, double log_floor, bool mask, bool write_weights) {
  check(gblock, "g_block"), check(mu3, "mu"), check(lv3, "log_var"), check(w_block, "w_block");
  check(r_b, "r_b"), check(centre, "centre");
  TORCH_CHECK(centre.numel() == mu3.size(2), "gmm_cpu_kernels: centre must have d elements");
  if (gmu3.numel() > 0) check(gmu3, "grad_mu");
  if (glv3.numel() > 0) check(glv3, "grad_log_var");
  const int64_t g = mu3.size(1), d = mu3.size(2);
  const float* cen = centre.data_ptr<float>();
  const float* gb = gblock.data_ptr<float>();
  const float* mu = mu3.data_ptr<float>();
  const float* lv = lv3.data_ptr<float>();
  float* w = w_block.data_ptr<float>();
  const float* r = r_b.data_ptr<float>();
  const bool need_mu = gmu3.numel() > 0, need_lv = glv3.numel() > 0;
  float* gm = need_mu ? gmu3.data_ptr<float>() : nullptr;
  float* gl = need_lv ? glv3.data_ptr<float>() : nullptr;
  const float lf = static_cast<float>(log_floor);
  // The gradients are written once and read only by the optimiser, after the whole layer: stream
  // them past the cache (no read-for-ownership of 2 x 13 MB at the paper's size) when aligned.
  bool stream = false;
#if defined(GMM_STREAM_STORES)
  auto aligned = [](const float* p) { return reinterpret_cast<std::uintptr_t>(p) % sizeof(Vec) == 0; };
  stream = d % W == 0 && (!need_mu || aligned(gm)) && (!need_lv || aligned(gl));
#endif
  at::parallel_for(0, g * n, 16, [&](int64_t begin, int64_t end) {
    for (int64_t rr = begin; rr < end; ++rr) {
      const int64_t j = rr / g, i = rr % g;  // memory order of the parameters
      const int64_t row = (s0 + j) * g + i;
      const float* m = mu + row * d;
      const float* l = lv + row * d;
      const float* a = gb + (i * n + j) * 2 * d;  // -r^T x, then r^T x^2
      float* mp = w + (i * n + j) * 2 * d;
      if (write_weights) weights_row(m, l, cen, d, -lf, mp, mp + d);
      grads_row(a, a + d, mp + d, m, l, cen, d, r[i * n + j], lf, mask,
                need_mu ? gm + row * d : nullptr, need_lv ? gl + row * d : nullptr, stream);
    }
#if defined(GMM_STREAM_STORES)
    if (stream) _mm_sfence();  // streamed stores visible before the optimiser reads them
#endif
  });
}


// The forward's block loop (gmm_function.forward_blocks_py in C++, no Python between blocks):
// per block of states, weights into ``weights`` (kept block by block when ``save``, else one
// block's scratch), comp = x2 @ W^T into the block's densities, log-sum-exp. Returns per block
// whether the variance floor may have clamped a variance.
std::vector<bool> forward_blocks(torch::Tensor x2, torch::Tensor mu3, torch::Tensor lv3,
                                 torch::Tensor log_w, torch::Tensor centre, torch::Tensor dens,
                                 torch::Tensor total, torch::Tensor out, torch::Tensor weights,
                                 int64_t chunk, double log_floor, bool save) {
  check(x2, "x2"), check(dens, "dens"), check(weights, "weights");
  const int64_t B = x2.size(0), d2 = x2.size(1);
  const int64_t S = mu3.size(0), g = mu3.size(1);
  std::vector<bool> floored;
  for (int64_t s0 = 0; s0 < S; s0 += chunk) {
    const int64_t n = std::min(chunk, S - s0);
    auto w_block = weights.narrow(0, save ? s0 * g * d2 : 0, g * n * d2).view({g, n, d2});
    auto cst = at::empty({g, n}, x2.options());
    floored.push_back(prepare(mu3, lv3, log_w, w_block, cst, centre, s0, n, log_floor));
    auto comp = dens.narrow(0, s0 * B * g, B * g * n).view({B, g * n});
    at::mm_out(comp, x2, w_block.view({g * n, d2}).t());
    densities(comp.view({B, g, n}), cst, total, out, s0);
  }
  return floored;
}

// The backward's block loop (gmm_function.backward_blocks_py in C++), last block first:
// responsibilities in place in ``dens``, their sums into r_sum (g, S), the parameter gradients
// through gbuf (if gbuf is not empty), then rw += r @ W (if rw is not empty). Without ``save``,
// each block's weights are recomputed into the ``weights`` scratch, in the gradients' pass when
// there are parameter gradients (the Python loop recomputes them in a pass of their own).
void backward_blocks(torch::Tensor dens, torch::Tensor scale, torch::Tensor xb, torch::Tensor mu3,
                     torch::Tensor lv3, torch::Tensor log_w, torch::Tensor centre,
                     torch::Tensor weights, bool save, torch::Tensor r_sum, torch::Tensor rw,
                     torch::Tensor gbuf, torch::Tensor gmu3, torch::Tensor glv3, int64_t chunk,
                     double log_floor, std::vector<bool> floored) {
  check(dens, "dens"), check(xb, "xb"), check(weights, "weights"), check(r_sum, "r_sum");
  const int64_t B = xb.size(0), d2 = xb.size(1);
  const int64_t S = mu3.size(0), g = mu3.size(1);
  const int64_t nblocks = (S + chunk - 1) / chunk;
  TORCH_CHECK(static_cast<int64_t>(floored.size()) == nblocks,
              "gmm_cpu_kernels: one floored flag per block");
  const bool need_x = rw.numel() > 0, need_params = gbuf.numel() > 0;
  for (int64_t blk = nblocks - 1; blk >= 0; --blk) {
    const int64_t s0 = blk * chunk, n = std::min(chunk, S - s0);
    auto slab = dens.narrow(0, s0 * B * g, B * g * n).view({B, g, n});
    auto r_b = at::empty({g, n}, xb.options());
    responsibilities(slab, scale, r_b, s0);
    r_sum.narrow(1, s0, n).copy_(r_b);
    if (!need_x && !need_params) continue;
    auto r = slab.view({B, g * n});
    auto w_block = weights.narrow(0, save ? s0 * g * d2 : 0, g * n * d2).view({g, n, d2});
    if (need_params) {
      // r^T [-x, x^2] first: the pass after it then writes the block's weights (unless saved)
      // and the gradients in one read of the parameter rows.
      auto g_block = gbuf.narrow(0, 0, g * n * d2).view({g, n, d2});
      auto g_rows = g_block.view({g * n, d2});
      at::mm_out(g_rows, r.t(), xb);
      grads(g_block, mu3, lv3, w_block, r_b, gmu3, glv3, centre, s0, n, log_floor, floored[blk],
            !save);
    } else if (!save) {
      auto cst = at::empty({g, n}, xb.options());  // the constants are the forward's business
      prepare(mu3, lv3, log_w, w_block, cst, centre, s0, n, log_floor);
    }
    if (need_x) rw.addmm_(r, w_block.view({g * n, d2}));
  }
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("prepare", &prepare, "GMM weights and constants of one block");
  m.def("densities", &densities, "log-sum-exp over components of one block");
  m.def("responsibilities", &responsibilities, "scaled responsibilities of one block");
  m.def("grads", &grads, "mean / log-variance gradients of one block");
  m.def("forward_blocks", &forward_blocks, "the forward's block loop");
  m.def("backward_blocks", &backward_blocks, "the backward's block loop");
}
