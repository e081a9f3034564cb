# Entry points of the riscv64 test kernel (S-mode, MMU off, under OpenSBI).
#
# _start           the boot hart: whichever hart OpenSBI picked (not always
#                  hart 0). a0 = hartid, a1 = device tree. It is logical CPU 0.
# _secondary_start harts started by SBI HSM hart_start: a0 = hartid,
#                  a1 = opaque = the logical CPU id the boot hart chose.
# Every hart: tp = its logical CPU id (the allocator's current_cpu hook reads
# it; nothing else uses tp: the kernel has no TLS), sp = the top of its own
# stack, the FPU enabled, traps going to trap_entry.

    .equ STACK_SHIFT, 16            # 64 KiB per CPU (kernel.ld reserves MAX_CPUS of them)

    .section .text.entry, "ax"
    .globl _start
_start:
    mv      s0, a0
    mv      s1, a1
    li      tp, 0
    call    hart_setup
    # Clear .bss (the stacks live outside it).
    la      t0, __bss_start
    la      t1, __bss_end
1:  bgeu    t0, t1, 2f
    sd      zero, 0(t0)
    addi    t0, t0, 8
    j       1b
2:  mv      a0, s0
    mv      a1, s1
    call    kernel_main
    j       park

    .globl _secondary_start
_secondary_start:
    mv      s0, a0
    mv      tp, a1
    call    hart_setup
    mv      a0, s0
    mv      a1, tp
    call    secondary_main
    j       park

# tp = logical CPU id. Sets sp, the FPU, the trap vector; uses t0 only.
hart_setup:
    la      sp, __stacks_start
    addi    t0, tp, 1
    slli    t0, t0, STACK_SHIFT
    add     sp, sp, t0
    li      t0, (1 << 13)           # sstatus.FS = Initial
    csrs    sstatus, t0
    la      t0, trap_entry
    csrw    stvec, t0
    csrw    sie, zero
    ret

park:
    wfi
    j       park

    .align 4
trap_entry:
    csrr    a0, scause
    csrr    a1, sepc
    csrr    a2, stval
    call    trap_handler            # reports and powers off; never returns
    j       park
