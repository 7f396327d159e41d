// The public ZKYNET_HD (zkynet/framework/host_device.h), under the name kernels include.
#pragma once

#include <zkynet/framework/host_device.h>
