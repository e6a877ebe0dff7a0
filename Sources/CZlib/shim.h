// zlib, for deflated .npz archives and CRC-32. Only Sources/Datasets imports this module.
#ifndef COMPRESSOR_CZLIB_SHIM_H
#define COMPRESSOR_CZLIB_SHIM_H
#include <zlib.h>

// inflateInit2 is a macro in zlib.h; Swift cannot call macros.
static inline int compressor_inflate_init_raw(z_stream *stream) {
  return inflateInit2(stream, -MAX_WBITS);
}
#endif
