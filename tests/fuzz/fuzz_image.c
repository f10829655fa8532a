/* An image file, as ./pack and the loader read one: its header
   (ssl_image_info), the whole decode to 0, 1 and 3 channels, the
   DCT-scaled decode and the loader's region decode. Built twice by
   `make fuzz`: with libjpeg-turbo (image) and without it (image_stb:
   JPEGs through stb_image after ssl__jpeg_check). The decoded size must be
   the size the header gave. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int w, h, c, fmt, dw, dh, dc, ox, oy, sw, sh;
    if (ssl_image_info(data, size, &w, &h, &c, &fmt) != 0) return 0;
    ssl_buf out = {0, 0};
    for (int want = 0; want <= 3; want += want ? 2 : 1) {
        if (ssl_decode(data, size, want, &out, &dw, &dh, &dc) != 0) continue;
        if (dw != w || dh != h || dc != (want ? want : c)) __builtin_trap();
    }
    int need = 1 + (int)(size % 17);
    if (ssl_decode_at_least(data, size, 3, need, need, &out, &dw, &dh, &dc) == 0 && (dw > w || dh > h)) __builtin_trap();
    if (ssl__decode_region_sized(data, size, 3, need, need, w / 3.0, h / 5.0, w * 0.8, h, w, h, &out, &dw, &dh, &dc, &ox,
                                 &oy, &sw, &sh) == 0 &&
        (sw > w || sh > h || ox < 0 || oy < 0 || ox + dw > sw || oy + dh > sh))
        __builtin_trap();
    ssl_buf_free(&out);
    return 0;
}
