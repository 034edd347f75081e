// Declarations only (see include/fuzz_driver.h); the driver is in libFuzzer.
#include "fuzz_driver.h"
