package simulator

import (
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// ovapipeInstaller simulates an unattended OS install: when a VM whose name matches the
// glob powers on, it waits, writes the installer disk as the VM's first disk file and
// shuts the guest down. The wait is counted from power-on or from the last keystroke,
// whichever is later, as a real install only starts once the boot command was typed.
type ovapipeInstaller struct {
	self    types.ManagedObjectReference
	glob    string
	disk    string
	seconds float64

	mu      sync.Mutex
	running map[types.ManagedObjectReference]bool
}

var (
	ovapipeLastKeyMu sync.Mutex
	ovapipeLastKey   = map[string]time.Time{}
)

func ovapipeNoteKeystroke(vmName string) {
	ovapipeLastKeyMu.Lock()
	ovapipeLastKey[vmName] = time.Now()
	ovapipeLastKeyMu.Unlock()
}

func ovapipeLastKeystroke(vmName string) time.Time {
	ovapipeLastKeyMu.Lock()
	defer ovapipeLastKeyMu.Unlock()
	return ovapipeLastKey[vmName]
}

func newOvapipeInstaller(glob, disk string, seconds float64) *ovapipeInstaller {
	return &ovapipeInstaller{
		self:    types.ManagedObjectReference{Type: "OvapipeInstaller", Value: "installer"},
		glob:    glob,
		disk:    disk,
		seconds: seconds,
		running: map[types.ManagedObjectReference]bool{},
	}
}

func (i *ovapipeInstaller) Reference() types.ManagedObjectReference   { return i.self }
func (i *ovapipeInstaller) PutObject(mo.Reference)                    {}
func (i *ovapipeInstaller) RemoveObject(types.ManagedObjectReference) {}

func (i *ovapipeInstaller) UpdateObject(obj mo.Reference, changes []types.PropertyChange) {
	vm, ok := obj.(*mo.VirtualMachine)
	if !ok {
		return
	}
	for _, change := range changes {
		if change.Name != "runtime.powerState" || fmt.Sprint(change.Val) != string(types.VirtualMachinePowerStatePoweredOn) {
			continue
		}
		if match, _ := filepath.Match(i.glob, vm.Name); !match {
			return
		}
		i.mu.Lock()
		already := i.running[vm.Self]
		i.running[vm.Self] = true
		i.mu.Unlock()
		if !already {
			log.Printf("installer: %s powered on; installing for %gs", vm.Name, i.seconds)
			go i.install(vm.Self, vm.Name, time.Now())
		}
	}
}

func (i *ovapipeInstaller) install(ref types.ManagedObjectReference, name string, poweredOn time.Time) {
	defer func() {
		i.mu.Lock()
		delete(i.running, ref)
		i.mu.Unlock()
	}()
	wait := time.Duration(i.seconds * float64(time.Second))
	for {
		start := poweredOn
		if key := ovapipeLastKeystroke(name); key.After(start) {
			start = key
		}
		left := time.Until(start.Add(wait))
		if left <= 0 {
			break
		}
		time.Sleep(left)
	}
	vm, ok := Map.Get(ref).(*VirtualMachine)
	if !ok {
		log.Printf("installer: %s is gone", name)
		return
	}
	Map.WithLock(vm, func() {
		if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
			log.Printf("installer: %s is %s already", name, vm.Runtime.PowerState)
			return
		}
		if err := i.writeDisk(vm); err != nil {
			log.Printf("installer: %s: %s", name, err)
		}
		ctx := *internalContext // the simulator's own session, as its in-process client uses
		ctx.Caller = nil
		vm.ShutdownGuest(&ctx, &types.ShutdownGuest{This: vm.Self})
		log.Printf("installer: %s powered off", name)
	})
}

func (i *ovapipeInstaller) writeDisk(vm *VirtualMachine) error {
	disks := vm.ovapipeDisks()
	if len(disks) == 0 {
		return fmt.Errorf("no disk to install on")
	}
	target := disks[0].file
	src, err := os.Open(i.disk)
	if err != nil {
		return err
	}
	defer src.Close()
	tmp, err := os.CreateTemp(filepath.Dir(target), ".installer-*")
	if err != nil {
		return err
	}
	_, err = io.CopyBuffer(tmp, src, make([]byte, ovapipeCopyBuffer))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), target)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	log.Printf("installer: wrote %s to %s", i.disk, target)
	return nil
}
