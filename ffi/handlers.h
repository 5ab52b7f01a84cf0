// FFI handler symbols, one per entry of kernels.inc: jaxcps::Ffi<Name> (e.g. FfiCpo).
#ifndef JAXCPS_HANDLERS_H_
#define JAXCPS_HANDLERS_H_

#include "xla/ffi/api/ffi.h"

namespace jaxcps {
#define X(name, Name) XLA_FFI_DECLARE_HANDLER_SYMBOL(Ffi##Name);
#include "kernels.inc"
#undef X
}  // namespace jaxcps

#endif  // JAXCPS_HANDLERS_H_
