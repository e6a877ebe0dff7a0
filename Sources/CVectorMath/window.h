#ifndef CVECTORMATH_WINDOW_H
#define CVECTORMATH_WINDOW_H

// The output columns [*lo, *hi) of a row of ow whose input column shift + ox·sw lies in [0, w):
// where a tap column reads inside the input rather than its padding (im2col, float and byte).
static inline void live_columns(long shift, long w, long ow, long sw, long *lo, long *hi) {
  long l = shift >= 0 ? 0 : (-shift + sw - 1) / sw;
  long h = w - shift <= 0 ? 0 : (w - shift + sw - 1) / sw;
  if (l > ow) l = ow;
  if (h > ow) h = ow;
  if (h < l) h = l;
  *lo = l;
  *hi = h;
}

#endif
