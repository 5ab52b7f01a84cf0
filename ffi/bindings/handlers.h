// FFI handler symbols, one per entry of kernels/kernels.inc: jaxcps::Ffi<Name> (e.g. FfiCpo),
// and FfiPrepared.
#ifndef JAXCPS_BINDINGS_HANDLERS_H_
#define JAXCPS_BINDINGS_HANDLERS_H_

#include "xla/ffi/api/ffi.h"

namespace jaxcps {
#define JAXCPS_KERNEL(Name) XLA_FFI_DECLARE_HANDLER_SYMBOL(Ffi##Name);
#include "kernels/kernels.inc"
#undef JAXCPS_KERNEL
// The one handler for every kernel's prepared weights (Kernel::prepared): jaxcps_prepared_f32.
XLA_FFI_DECLARE_HANDLER_SYMBOL(FfiPrepared);
}  // namespace jaxcps

#endif  // JAXCPS_BINDINGS_HANDLERS_H_
