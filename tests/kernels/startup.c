/* The least a QEMU Cortex-M board needs to run kernel_cases.c: a vector table (the stack's
 * top, the reset handler), the FPU and Helium switched on where there are, .bss zeroed, and
 * newlib's semihosting stdio (rdimon) opened. .data needs no copy: QEMU loads it where it
 * runs. The program's return value leaves QEMU as its exit status (semihosting SYS_EXIT).
 * For tests/test_kernels.py only; the firmware's own startup is mnist_edge/firmware's. */
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

extern uint32_t __stack_top, __bss_start__, __bss_end__;
extern void initialise_monitor_handles(void);
extern int main(int argc, char **argv);

#define CPACR (*(volatile uint32_t *)0xE000ED88U)

void reset_handler(void)
{
    uint32_t *word;

#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
    CPACR |= 0xFU << 20; /* CP10 and CP11: the FPU, and Helium */
    __asm volatile("dsb\n\tisb" ::: "memory");
#endif
    for (word = &__bss_start__; word < &__bss_end__; ++word) {
        *word = 0;
    }
    initialise_monitor_handles();
    exit(main(0, NULL));
}

/* A fault ends the run at once, with status 3 (newlib's _exit: semihosting SYS_EXIT). */
static void fault(void)
{
    _exit(3);
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(uintptr_t)&__stack_top, reset_handler, fault, fault, fault, fault, fault,
};
