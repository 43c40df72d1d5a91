package simulator

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
)

// A blank streamOptimized VMDK (no grains: every sector reads as zero), which is what a
// real host exports for a disk nothing was written to. Debian's simulator leaves new disks
// as empty files, which no VMDK reader accepts.

const (
	ovapipeSector       = 512
	ovapipeGrainSectors = 128
	ovapipeGTEntries    = 512
	ovapipeMarkerGD     = 2
	ovapipeMarkerFooter = 3
)

type ovapipeSparseHeader struct {
	Magic             uint32
	Version           uint32
	Flags             uint32
	Capacity          uint64
	GrainSize         uint64
	DescriptorOffset  uint64
	DescriptorSize    uint64
	NumGTEsPerGT      uint32
	RGDOffset         uint64
	GDOffset          uint64
	OverHead          uint64
	UncleanShutdown   uint8
	SingleEndLine     uint8
	NonEndLine        uint8
	DoubleEndLine1    uint8
	DoubleEndLine2    uint8
	CompressAlgorithm uint16
}

func ovapipeSectors(n int) int { return (n + ovapipeSector - 1) / ovapipeSector }

func ovapipePadSector(b *bytes.Buffer) {
	if rest := b.Len() % ovapipeSector; rest != 0 {
		b.Write(make([]byte, ovapipeSector-rest))
	}
}

func ovapipeMarker(b *bytes.Buffer, value uint64, kind uint32) {
	var m [ovapipeSector]byte
	binary.LittleEndian.PutUint64(m[0:], value)
	binary.LittleEndian.PutUint32(m[12:], kind)
	b.Write(m[:])
}

// ovapipeBlankStreamVMDK returns a streamOptimized VMDK of capacityKB that reads as zeros.
func ovapipeBlankStreamVMDK(capacityKB int64, name string) []byte {
	capacity := uint64(capacityKB) * 2 // sectors
	cylinders := capacity / (255 * 63)
	if cylinders > 65535 {
		cylinders = 65535
	}
	descriptor := fmt.Sprintf(`# Disk DescriptorFile
version=1
CID=fffffffe
parentCID=ffffffff
createType="streamOptimized"

# Extent description
RW %d SPARSE "%s"

# The Disk Data Base
#DDB

ddb.virtualHWVersion = "4"
ddb.geometry.cylinders = "%d"
ddb.geometry.heads = "255"
ddb.geometry.sectors = "63"
ddb.adapterType = "lsilogic"
`, capacity, name, cylinders)
	descriptorSectors := ovapipeSectors(len(descriptor))
	gdEntries := (capacity + ovapipeGrainSectors*ovapipeGTEntries - 1) / (ovapipeGrainSectors * ovapipeGTEntries)
	gdSectors := ovapipeSectors(int(gdEntries) * 4)

	header := ovapipeSparseHeader{
		Magic: 0x564d444b, Version: 3, Flags: 0x30001, // newline test, compressed grains, markers
		Capacity: capacity, GrainSize: ovapipeGrainSectors,
		DescriptorOffset: 1, DescriptorSize: uint64(descriptorSectors),
		NumGTEsPerGT: ovapipeGTEntries, GDOffset: ^uint64(0), // GD_AT_END: see the footer
		OverHead:      uint64(1 + descriptorSectors),
		SingleEndLine: '\n', NonEndLine: ' ', DoubleEndLine1: '\r', DoubleEndLine2: '\n',
		CompressAlgorithm: 1, // deflate
	}
	var out bytes.Buffer
	_ = binary.Write(&out, binary.LittleEndian, header)
	ovapipePadSector(&out)
	out.WriteString(descriptor)
	ovapipePadSector(&out)

	ovapipeMarker(&out, uint64(gdSectors), ovapipeMarkerGD)
	gdOffset := uint64(out.Len() / ovapipeSector)
	out.Write(make([]byte, gdSectors*ovapipeSector)) // every GD entry 0: no grain tables

	ovapipeMarker(&out, 1, ovapipeMarkerFooter)
	header.GDOffset = gdOffset
	_ = binary.Write(&out, binary.LittleEndian, header)
	ovapipePadSector(&out)
	out.Write(make([]byte, ovapipeSector)) // end-of-stream marker
	return out.Bytes()
}

// ovapipeFillBlankDisk writes a blank streamOptimized VMDK into an empty disk file.
func ovapipeFillBlankDisk(file string, capacityKB int64) error {
	stat, err := os.Stat(file)
	if err != nil || stat.Size() > 0 {
		return err
	}
	return os.WriteFile(file, ovapipeBlankStreamVMDK(capacityKB, filepath.Base(file)), 0o600)
}
