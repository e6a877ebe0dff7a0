// protobuf-c as Swift sees it. Only Sources/ONNX imports this module.
#ifndef COMPRESSOR_CPROTOBUFC_SHIM_H
#define COMPRESSOR_CPROTOBUFC_SHIM_H
#include <malloc.h>
#include <protobuf-c/protobuf-c.h>

// A ProtobufCBuffer "subclass" whose append callback reaches a Swift object through
// `context`; protobuf-c only ever sees the leading `base`.
typedef struct {
  ProtobufCBuffer base;
  void *context;
} CompressorStreamBuffer;

// Whether a field holds a nested message (the wire scanner descends into those).
static inline int compressor_field_is_message(const ProtobufCFieldDescriptor *field) {
  return field->type == PROTOBUF_C_TYPE_MESSAGE;
}

#endif
