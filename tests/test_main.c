/* The one translation unit with ssl.h's implementation and the harness. */
#define SSL_IMPLEMENTATION
#define TEST_MAIN
#include "test.h"
