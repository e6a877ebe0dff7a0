// zlib, for deflated .npz archives, CRC-32 and the deflated size of a written model. Only Sources/Datasets imports this module.
#ifndef COMPRESSOR_CZLIB_SHIM_H
#define COMPRESSOR_CZLIB_SHIM_H
#include <zlib.h>

// inflateInit2 is a macro in zlib.h; Swift cannot call macros.
static inline int compressor_inflate_init_raw(z_stream *stream) {
  return inflateInit2(stream, -MAX_WBITS);
}

// deflateInit is a macro too.
static inline int compressor_deflate_init(z_stream *stream, int level) {
  return deflateInit(stream, level);
}
#endif
