/* Wine-only, never shipped: Wine 8 has no bcryptprimitives.dll, and the Rust standard library
   (1.78 and later) in cryptography's _rust.pyd imports ProcessPrng from it. This DLL answers
   ProcessPrng with RtlGenRandom (advapi32's SystemFunction036), in chunks of at most 256 MiB
   since RtlGenRandom takes a 32-bit length. build_windows.py puts it into the Wine prefix's
   system32 only and fails the build if it ever appears in dist/. Real Windows (8 and later)
   has its own. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    const SIZE_T chunk = 0x10000000;
    while (length > 0) {
        ULONG part = (ULONG)(length > chunk ? chunk : length);
        if (!SystemFunction036(data, part))
            return FALSE;
        data += part;
        length -= part;
    }
    return TRUE;
}
