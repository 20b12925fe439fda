/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A boot sector that keeps writing a counter into the memory BAR of a PCI
 * device, for migrations with a guest that dirties device memory.
 *
 * The firmware loads it at 0x7c00 in real mode, with the device's BARs
 * placed. It enters 32-bit protected mode, reads the BAR's address from the
 * device's configuration space, maps the first GiB of the BAR at 1 GiB with
 * PAE 2 MiB pages (the BAR may lie above 4 GiB), then forever increments a
 * counter and stores it into the first 32 bits of COUNT pages, STRIDE bytes
 * apart. Nothing else in guest memory is written once paging is on.
 *
 * The host fills in the parameters at the end of the sector:
 *   0x1f0  CONFIG: the configuration address (port 0xcf8) of the BAR's low half
 *   0x1f4  STRIDE: the bytes between two written pages
 *   0x1f8  COUNT:  the pages written in each round
 *
 * Build: as --32 -o x.o rustmig_bar_writer.S
 *        ld -m elf_i386 -Ttext 0x7c00 --oformat binary -o x.bin x.o
 */

	.equ	PDPT, 0x10000
	.equ	PD_LOW, 0x11000
	.equ	PD_BAR, 0x12000
	.equ	WINDOW, 0x40000000
	.equ	PG_2M, 0x83		/* present, writable, 2 MiB page */

	.code16
	.globl _start
_start:
	cli
	xorw	%ax, %ax
	movw	%ax, %ds
	movw	%ax, %ss
	movw	$0x7c00, %sp
	/* Fast A20. */
	inb	$0x92, %al
	orb	$2, %al
	andb	$0xfe, %al
	outb	%al, $0x92
	lgdtl	gdt_desc
	movl	%cr0, %eax
	orl	$1, %eax
	movl	%eax, %cr0
	ljmpl	$0x08, $pm32

	.code32
pm32:
	movw	$0x10, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss

	/* The BAR's address: its low half, then its high half. */
	movl	config, %eax
	movw	$0xcf8, %dx
	outl	%eax, %dx
	movw	$0xcfc, %dx
	inl	%dx, %eax
	andl	$0xfffffff0, %eax
	movl	%eax, %esi
	movl	config, %eax
	addl	$4, %eax
	movw	$0xcf8, %dx
	outl	%eax, %dx
	movw	$0xcfc, %dx
	inl	%dx, %eax
	movl	%eax, %ebp

	/* The page tables: zeroed, then the low 2 MiB identity mapped, the BAR at WINDOW. */
	movl	$PDPT, %edi
	xorl	%eax, %eax
	movl	$(0x3000 / 4), %ecx
	cld
	rep stosl
	movl	$(PD_LOW | 1), PDPT
	movl	$(PD_BAR | 1), PDPT + 8
	movl	$PG_2M, PD_LOW
	movl	$PD_BAR, %edi
	movl	$512, %ecx
	orl	$PG_2M, %esi
1:	movl	%esi, (%edi)
	movl	%ebp, 4(%edi)
	addl	$0x200000, %esi
	adcl	$0, %ebp
	addl	$8, %edi
	loop	1b

	movl	%cr4, %eax
	orl	$0x20, %eax		/* PAE */
	movl	%eax, %cr4
	movl	$PDPT, %eax
	movl	%eax, %cr3
	movl	%cr0, %eax
	orl	$0x80000000, %eax	/* PG */
	movl	%eax, %cr0

	xorl	%ebx, %ebx
	movl	stride, %edx
round:
	incl	%ebx
	movl	$WINDOW, %edi
	movl	count, %ecx
2:	movl	%ebx, (%edi)
	addl	%edx, %edi
	loop	2b
	jmp	round

	.p2align 3
gdt:
	.quad	0
	.quad	0x00cf9a000000ffff	/* 0x08: flat 32-bit code */
	.quad	0x00cf92000000ffff	/* 0x10: flat 32-bit data */
gdt_desc:
	.word	gdt_desc - gdt - 1
	.long	gdt

	.org	0x1f0
config:	.long	0x80002018	/* bus 0, device 4, function 0, BAR2 */
stride:	.long	409600		/* every 100th page */
count:	.long	164
	.org	0x1fe
	.word	0xaa55
